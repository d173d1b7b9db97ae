"""Rows of responses advanced one sampled token at a time through the KV caches of one or more models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.backends.hf import HFModel, KVRows, left_pad
from harness.sampling import Sampler, groups_of
from harness.stopping import Stopper
from harness.types import Compute, Template

Combine = Callable[[list[torch.Tensor]], torch.Tensor]
Observe = Callable[[list[int], torch.Tensor, torch.Tensor], None]  # (live rows, logits drawn from, tokens drawn)


def strong_only(logits: list[torch.Tensor]) -> torch.Tensor:
    return logits[0]


@dataclass(frozen=True)
class Steering:
    """Models that read every sampled token beside the strong model, each in its own prompt template, and how all
    their next-token logits (the strong model's first) combine into the logits to sample from."""

    models: list[tuple[HFModel, Template]]
    combine: Combine


class Rollout:
    """The token loop shared by every decoder: sample, check for an end, drop ended rows, read the new token.

    `models[0]` is the strong model; any others (EFT's tuned and untuned) read the same tokens in step, and
    `combine` turns all their next-token logits into the logits to sample from. Rows are grouped by prompt; a row
    that ends leaves every batch at once, and `branch` continues chosen rows (repeats allowed) with their caches.
    `observe`, where given, sees every draw (a server reports log-probabilities from it).
    """

    def __init__(
        self,
        models: Sequence[HFModel],
        sampler: Sampler,
        stopper: Stopper,
        generators: Sequence[torch.Generator],
        computes: Sequence[Compute],
        combine: Combine = strong_only,
        observe: Observe | None = None,
    ):
        self.models, self.sampler, self.stopper, self.combine = list(models), sampler, stopper, combine
        self.observe = observe
        self.generators, self.computes = list(generators), list(computes)

    def prefill(self, prompt_ids: Sequence[Sequence[list[int]]]) -> None:
        """Read each prompt once per model (`prompt_ids[m][p]`): one row per prompt."""
        self.kvs = [KVRows(lm) for lm in self.models]
        self.logits = []
        for m, (lm, kv, ids) in enumerate(zip(self.models, self.kvs, prompt_ids, strict=True)):
            tokens, valid = left_pad(list(ids), lm.pad_id, lm.device)
            self.logits.append(kv.extend(tokens, valid)[:, -1])
            for compute, prompt in zip(self.computes, ids, strict=True):
                self._charge(compute, m, len(prompt))
        self.row_prompt = list(range(len(self.computes)))
        self.row_tokens: list[list[int]] = [[] for _ in self.row_prompt]
        self.reasons: list[str | None] = [None] * len(self.row_prompt)
        self.live = list(self.row_prompt)  # rows still in the batches, in batch order

    def branch(self, rows: Sequence[int]) -> None:
        """Continue from `rows` (live rows, repeats allowed, grouped by prompt); every other row is dropped."""
        position = {r: j for j, r in enumerate(self.live)}
        index = torch.tensor([position[r] for r in rows], dtype=torch.long)
        self._keep(index)
        self.row_tokens = [list(self.row_tokens[r]) for r in rows]
        self.row_prompt = [self.row_prompt[r] for r in rows]
        self.reasons = [None] * len(rows)
        self.live = list(range(len(rows)))

    def advance(self, steps: int, final: bool) -> None:
        """Sample up to `steps` tokens per live row; `final` means the budget ends here (the last token is not read)."""
        for step in range(steps):
            if not self.live:
                return
            # 1. draw one token per live row, each prompt from its own generator
            groups = groups_of([self.row_prompt[r] for r in self.live], self.generators)
            logits = self.combine(self.logits)
            tokens = self.sampler.draw(logits, groups)
            if self.observe is not None:
                self.observe(self.live, logits, tokens)
            for r, t in zip(self.live, tokens.tolist(), strict=True):
                self.row_tokens[r].append(t)
            # 2. note which rows just ended (EOS or a stop string)
            ended = self.stopper.ended([self.row_prompt[r] for r in self.live], [self.row_tokens[r] for r in self.live])
            for r, why in zip(self.live, ended, strict=True):
                self.reasons[r] = why
            if final and step == steps - 1:
                return  # the budget is spent: the last tokens need no forward pass
            # 3. drop ended rows from every batch so no compute is spent on them
            going = [j for j, why in enumerate(ended) if why is None]
            if len(going) < len(self.live):
                index = torch.tensor(going, dtype=torch.long)
                self._keep(index)
                tokens = tokens[index.to(tokens.device)]
                self.live = [self.live[j] for j in going]
                if not self.live:
                    return
            # 4. every model reads the new tokens, giving next-token logits for every live row
            self.logits = [kv.extend(tokens[:, None].to(kv.lm.device))[:, -1] for kv in self.kvs]
            for p, n in Counter(self.row_prompt[r] for r in self.live).items():
                for m in range(len(self.models)):
                    self._charge(self.computes[p], m, n)

    def _keep(self, index: torch.Tensor) -> None:
        for kv in self.kvs:
            kv.select(index)
        self.logits = [x[index.to(x.device)] for x in self.logits]

    def _charge(self, compute: Compute, model: int, tokens: int) -> None:
        if model == 0:
            compute.strong_tokens += tokens
            compute.strong_forward_passes += 1
        else:
            compute.guide_tokens += tokens
            compute.guide_forward_passes += 1
