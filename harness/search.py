"""Chunk-level beam search (CBS, Zhou et al. 2024, Alg. 1) over a batch of prompts, with KV caches throughout.

Per prompt, W hypotheses are each extended by K sampled chunks of L tokens from the frozen strong model; the W*K
candidates (and any finished hypotheses already kept) are ranked by the guide's implicit reward and the best W
survive. Every prompt is prefilled once; the strong model and both guide models keep their KV caches, which are
reordered by index when beams are selected, and the guide reads only the tokens each chunk adds. Plain sampling
(W=K=1) and best-of-N (W=1, K=N, L=whole budget) are this loop with other numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from harness.backends.hf import HFModel
from harness.errors import require
from harness.guide import Guide, GuideState
from harness.rollout import Rollout
from harness.sampling import Sampler
from harness.stopping import LENGTH, Stopper
from harness.types import Compute, Output, Request, SampleConfig, Template


@dataclass
class _Hypothesis:
    tokens: list[int]
    reason: str | None  # None while it may still grow
    score: float


@dataclass
class _Prompt:
    """Per-prompt search state: its generator, the finished hypotheses it keeps, and what it has cost."""

    request: Request
    generator: torch.Generator
    kept_finished: list[_Hypothesis] = field(default_factory=list)
    trace: list[list[float]] = field(default_factory=list)
    compute: Compute = field(default_factory=Compute)
    output: Output | None = None


class ChunkBeamSearch:
    """One batched search over `requests`: the rollout's rows are the live hypotheses, grouped by prompt.

    `shape` is (W, K, L); L=None is one chunk of the whole budget."""

    def __init__(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        shape: tuple[int, int, int | None],
        guide: Guide | None,
        template: Template | None = None,
    ):
        self.width, self.successors, chunk_length = shape
        require(guide is not None or self.width * self.successors == 1, "a search with W*K > 1 needs a guide")
        self.strong, self.sample, self.guide = strong, sample, guide
        self.chunk_length = chunk_length or sample.max_new_tokens
        sampler = Sampler(sample, strong.device)
        self.stopper = Stopper(strong, sample.stop)
        self.prompts = [_Prompt(r, sampler.generator(r.seed)) for r in requests]
        template = template or Template()
        self.prompt_ids = [strong.encode_prompt(template, r.prompt, sample.max_new_tokens) for r in requests]
        self.rollout = Rollout(
            [strong], sampler, self.stopper, [p.generator for p in self.prompts], [p.compute for p in self.prompts]
        )

    def run(self) -> list[Output]:
        if not self.prompts:
            return []
        start = time.perf_counter()
        # 1. read every prompt once, then branch each into W*K rows that share its cache
        self.rollout.prefill([self.prompt_ids])
        self.guide_state: GuideState | None = None
        if self.guide is not None:
            prompts = [p.request.prompt for p in self.prompts]
            self.guide_state = self.guide.start(self.strong, prompts, self.sample.max_new_tokens)
            self._charge_guide(list(range(len(self.prompts))))
        fan_out = [p for p in range(len(self.prompts)) for _ in range(self.width * self.successors)]
        self._branch(fan_out)
        generated, budget = 0, self.sample.max_new_tokens
        while self.rollout.row_prompt:
            # 2. sample a chunk of L tokens for every row; 3. score, keep the best W per prompt, branch them K ways
            steps = min(self.chunk_length, budget - generated)
            generated += steps
            self.rollout.advance(steps, final=generated == budget)
            self._select(budget_left=generated < budget)
        seconds = (time.perf_counter() - start) / len(self.prompts)
        for p in self.prompts:
            p.output.compute.seconds = seconds
        return [p.output for p in self.prompts]

    def _select(self, budget_left: bool) -> None:
        """Rank each prompt's candidates by guide reward, keep the best W, and branch the open ones K ways."""
        rows, reasons = self.rollout.row_tokens, self.rollout.reasons
        scores = [0.0] * len(rows)
        if self.guide_state is not None:
            self.guide_state.update(rows, [why is not None for why in reasons])
            self._charge_guide(self.rollout.row_prompt)
            scores = self.guide_state.rewards()
        pools: dict[int, list[tuple[_Hypothesis, int | None]]] = {}
        for r, p in enumerate(self.rollout.row_prompt):
            pools.setdefault(p, [(h, None) for h in self.prompts[p].kept_finished])
            pools[p].append((_Hypothesis(rows[r], reasons[r], scores[r]), r))
        next_rows: list[int] = []
        for p, pool in pools.items():
            kept = sorted(pool, key=lambda c: -c[0].score)[: self.width]  # stable: earlier candidates win ties
            prompt = self.prompts[p]
            if self.guide is not None:
                prompt.trace.append([h.score for h, _ in kept])
            prompt.kept_finished = [h for h, _ in kept if h.reason is not None]
            growing = [r for h, r in kept if h.reason is None]
            if growing and budget_left:
                next_rows += [r for r in growing for _ in range(self.successors)]
            else:
                self._finish(prompt, kept[0][0])
        self._branch(next_rows)

    def _branch(self, rows: list[int]) -> None:
        """Continue from `rows` (repeats allowed) in the strong model's caches and the guide's alike."""
        self.rollout.branch(rows)
        if self.guide_state is not None:
            self.guide_state.select(rows)

    def _finish(self, prompt: _Prompt, best: _Hypothesis) -> None:
        reason = best.reason or LENGTH
        prompt.output = Output(
            id=prompt.request.id,
            text=self.stopper.text(best.tokens, reason),
            tokens=best.tokens,
            finish_reason=reason,
            score=best.score if self.guide is not None else None,
            compute=prompt.compute,
            trace=prompt.trace,
        )

    def _charge_guide(self, row_prompt: list[int]) -> None:
        """Add the guide's latest step to the compute of the prompts whose rows (`row_prompt`) it read."""
        step = self.guide_state.last_step()
        for p, n in zip(row_prompt, step.tokens, strict=True):
            self.prompts[p].compute.guide_tokens += n
        for p in set(row_prompt):
            self.prompts[p].compute.guide_forward_passes += step.passes
