"""Chunk-level beam search (CBS, Zhou et al. 2024, Alg. 1) over a batch of prompts.

Per prompt, W hypotheses are each extended by K sampled chunks of L tokens from the frozen strong model; the W*K
candidates (and any finished hypotheses already kept) are ranked by the guide's implicit reward and the best W
survive. Plain sampling (W=K=1) and best-of-N (W=1, K=N, L=whole budget) are this loop with other numbers; emulated
fine-tuning is plain sampling steered by other models whose logits combine with the strong model's at every token.

The strong model's side of the search is a set of `Rows`, one growing response per row. For a Hugging Face model
(`TokenRows`) every prompt is prefilled once and the KV caches of the strong model and both guide models are
reordered by index when beams are selected; the guide reads only the tokens each chunk adds. For a model behind an
OpenAI-compatible server (harness.backends.openai_api) each kept hypothesis asks the server for K continuations of
L tokens, and the guide reads the returned text through its own tokenizer. Selection is the same code for both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from harness.backends.hf import HFModel
from harness.errors import require
from harness.guide import Guide, GuideState
from harness.rollout import Rollout, Steering, strong_only
from harness.sampling import Sampler
from harness.stopping import LENGTH, STOP, Stopper
from harness.types import Compute, Output, Request, SampleConfig, Template

if TYPE_CHECKING:
    from harness.backends.openai_api import CompletionsModel


class Rows(Protocol):
    """The strong model's side of a search: growing responses, one per row, rows grouped by prompt."""

    lm: HFModel | None  # the strong model whose token ids the guide may read as they are; None: text only
    row_prompt: list[int]  # the prompt each row belongs to
    responses: list[Any]  # each row's response so far: strong token ids, or text
    reasons: list[str | None]  # why each row ended in the latest chunk ("eos", "stop"); None while it goes on
    stops: list[str]  # the stop string that ended each row in the latest chunk, "" for every other row

    def start(self) -> None:
        """Read every prompt: one row per prompt."""

    def branch(self, rows: Sequence[int]) -> None:
        """Continue from `rows` (repeats allowed, grouped by prompt); every other row is dropped."""

    def advance(self, steps: int, final: bool) -> None:
        """Grow every row by up to `steps` tokens; `final` means the token budget ends with this chunk."""

    def read(self, state: GuideState, finished: Sequence[bool]) -> None:
        """Bring the guide's rows up to date with every row's response."""

    def output(self, prompt: int, response: Any, reason: str) -> tuple[str, list[int]]:
        """A finished response of prompt `prompt`: its text (as it follows the prompt, cut before a stop string) and
        its strong-model token ids (none where the model returns only text)."""


class TokenRows:
    """Rows sampled token by token from a Hugging Face model through its KV cache (the shared `Rollout`)."""

    def __init__(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        template: Template,
        computes: Sequence[Compute],
        steering: Steering | None = None,
    ):
        self.lm = strong
        sampler = Sampler(sample, strong.device)
        # every model the rollout steps (the strong one, and any steering it) reads each prompt in its own template
        models = [(strong, template), *(steering.models if steering else [])]
        self.prompt_ids = [[lm.encode_prompt(t, r.prompt, sample.max_new_tokens) for r in requests] for lm, t in models]
        self.stopper = Stopper(strong, sample.stop, self.prompt_ids[0])
        generators = [sampler.generator(r.seed) for r in requests]
        combine = steering.combine if steering else strong_only
        self.rollout = Rollout([lm for lm, _ in models], sampler, self.stopper, generators, computes, combine)

    row_prompt = property(lambda self: self.rollout.row_prompt)
    responses = property(lambda self: self.rollout.row_tokens)
    reasons = property(lambda self: self.rollout.reasons)

    @property
    def stops(self) -> list[str]:
        out = [""] * len(self.reasons)
        ended = [r for r, why in enumerate(self.reasons) if why == STOP]
        texts = self.stopper.texts(
            [self.row_prompt[r] for r in ended], [self.responses[r] for r in ended], [STOP] * len(ended)
        )
        for r, (_, stop) in zip(ended, texts, strict=True):
            out[r] = stop
        return out

    def start(self) -> None:
        self.rollout.prefill(self.prompt_ids)

    def branch(self, rows: Sequence[int]) -> None:
        self.rollout.branch(rows)

    def advance(self, steps: int, final: bool) -> None:
        self.rollout.advance(steps, final)

    def read(self, state: GuideState, finished: Sequence[bool]) -> None:
        """The guide reads the strong tokens, or the text (through any stop string that ended it) where it
        re-tokenises."""
        texts = None
        if state.needs_text:
            texts = [t + stop for t, stop in self.stopper.texts(self.row_prompt, self.responses, self.reasons)]
        state.update(self.responses, texts, finished)

    def output(self, prompt: int, response: list[int], reason: str) -> tuple[str, list[int]]:
        text, _ = self.stopper.texts([prompt], [response], [reason])[0]
        return text, response


@dataclass
class _Hypothesis:
    response: Any  # token ids or text, as the rows hold it
    reason: str | None  # None while it may still grow
    score: float
    stop: str = ""  # the stop string that ended it, which the guide read


@dataclass
class _Prompt:
    """Per-prompt search state: the finished hypotheses it keeps, its trace, and what it has cost."""

    request: Request
    kept_finished: list[_Hypothesis] = field(default_factory=list)
    trace: list[list[float]] = field(default_factory=list)
    compute: Compute = field(default_factory=Compute)
    output: Output | None = None


class ChunkBeamSearch:
    """One batched search over `requests`: the rows are the live hypotheses, grouped by prompt.

    `shape` is (W, K, L); L=None is one chunk of the whole budget. A finished hypothesis that is kept competes in
    later rounds once; with `branch_finished` it is branched K ways like an open one, as the paper's code does, so
    its copies compete K times and can fill several of the W slots."""

    def __init__(
        self,
        strong: HFModel | CompletionsModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        shape: tuple[int, int, int | None],
        guide: Guide | None,
        template: Template | None = None,
        steering: Steering | None = None,
        branch_finished: bool = False,
    ):
        self.width, self.successors, chunk_length = shape
        self.branch_finished = branch_finished
        require(guide is not None or self.width * self.successors == 1, "a search with W*K > 1 needs a guide")
        self.sample, self.guide = sample, guide
        self.chunk_length = chunk_length or sample.max_new_tokens
        self.prompts = [_Prompt(r) for r in requests]
        template, computes = template or Template(), [p.compute for p in self.prompts]
        if isinstance(strong, HFModel):
            self.rows: Rows = TokenRows(strong, requests, sample, template, computes, steering)
        else:
            require(steering is None, "a model behind an API cannot be steered token by token (eft); use cbs or bon")
            self.rows = strong.rows(requests, sample, template, computes)

    def run(self) -> list[Output]:
        if not self.prompts:
            return []
        start = time.perf_counter()
        # 1. read every prompt once, then branch each into W*K rows that share it
        self.rows.start()
        self.guide_state: GuideState | None = None
        if self.guide is not None:
            prompts = [p.request.prompt for p in self.prompts]
            self.guide_state = self.guide.start(self.rows.lm, prompts, self.sample.max_new_tokens)
            self._charge_guide(list(range(len(self.prompts))))
        fan_out = [p for p in range(len(self.prompts)) for _ in range(self.width * self.successors)]
        self._branch(fan_out)
        generated, budget = 0, self.sample.max_new_tokens
        while self.rows.row_prompt:
            # 2. sample a chunk of L tokens for every row; 3. score, keep the best W per prompt, branch them K ways
            steps = min(self.chunk_length, budget - generated)
            generated += steps
            self.rows.advance(steps, final=generated == budget)
            self._select(budget_left=generated < budget)
        seconds = (time.perf_counter() - start) / len(self.prompts)
        for p in self.prompts:
            p.output.compute.seconds = seconds
        return [p.output for p in self.prompts]

    def _select(self, budget_left: bool) -> None:
        """Rank each prompt's candidates by guide reward, keep the best W, and branch the open ones K ways."""
        responses, reasons, stops = self.rows.responses, self.rows.reasons, self.rows.stops
        scores = [0.0] * len(responses)
        if self.guide_state is not None:
            ended = [self.guide.scores_eos(why is not None, not budget_left) for why in reasons]
            self.rows.read(self.guide_state, ended)
            self._charge_guide(self.rows.row_prompt)
            scores = self.guide_state.rewards()
        pools: dict[int, list[tuple[_Hypothesis, int | None]]] = {}
        for r, p in enumerate(self.rows.row_prompt):
            pools.setdefault(p, [(h, None) for h in self.prompts[p].kept_finished])
            pools[p].append((_Hypothesis(responses[r], reasons[r], scores[r], stops[r]), r))
        next_rows: list[int] = []
        for p, pool in pools.items():
            kept = sorted(pool, key=lambda c: -c[0].score)[: self.width]  # stable: earlier candidates win ties
            prompt = self.prompts[p]
            if self.guide is not None:
                prompt.trace.append([h.score for h, _ in kept])
            copies = self.successors if self.branch_finished else 1
            prompt.kept_finished = [h for h, _ in kept if h.reason is not None for _ in range(copies)]
            growing = [r for h, r in kept if h.reason is None]
            if growing and budget_left:
                next_rows += [r for r in growing for _ in range(self.successors)]
            else:
                self._finish(p, kept[0][0])
        self._branch(next_rows)

    def _branch(self, rows: list[int]) -> None:
        """Continue from `rows` (repeats allowed) on the strong model's side and in the guide's caches alike."""
        self.rows.branch(rows)
        if self.guide_state is not None:
            self.guide_state.select(rows)

    def _finish(self, p: int, best: _Hypothesis) -> None:
        prompt, reason = self.prompts[p], best.reason or LENGTH
        text, tokens = self.rows.output(p, best.response, reason)
        prompt.output = Output(
            id=prompt.request.id,
            text=text,
            tokens=tokens,
            finish_reason=reason,
            stop=best.stop,
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
