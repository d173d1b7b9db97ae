"""Emulated fine-tuning (Mitchell et al., ICLR 2024): sample each token from the strong model's logits shifted by
beta times the tuned-minus-untuned log-ratio. Needs guides that share the strong model's vocabulary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from harness.errors import require
from harness.methods import require_guide
from harness.types import Compute, Output, Request, SampleConfig, Template

if TYPE_CHECKING:
    import torch

    from harness.backends.hf import HFModel
    from harness.guide import Guide


@dataclass(frozen=True)
class EFT:
    """Per token: log p_strong + beta * (log p_tuned - log p_untuned), then the usual temperature/top-k/top-p."""

    beta: float = 1.0

    name: ClassVar[str] = "eft"
    needs_guide: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(
            isinstance(self.beta, int | float) and not isinstance(self.beta, bool) and self.beta >= 0,
            f"eft beta must be a number >= 0, got {self.beta!r}",
        )

    def label(self) -> str:
        return f"eft(beta={self.beta:g})"

    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """Strong logits plus beta times the guide's logit difference. Per-row constants cancel in the softmax, so
        raw logits serve as log-probabilities; guide ids past the strong model's logits are dropped, missing ones
        count as no shift."""
        import torch

        strong, tuned, untuned = logits
        shift = (tuned - untuned).to(strong.device)
        vocab = strong.shape[-1]
        shift = (
            shift[:, :vocab]
            if shift.shape[-1] >= vocab
            else torch.nn.functional.pad(shift, (0, vocab - shift.shape[-1]))
        )
        return strong + self.beta * shift

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]:
        from harness.rollout import Rollout
        from harness.sampling import Sampler
        from harness.stopping import LENGTH, Stopper

        guide = require_guide(self.name, guide)
        for lm in (guide.tuned, guide.untuned):
            require(
                lm.same_vocab(strong),
                f"eft needs guides that share the strong model's vocabulary, but {lm.name} and {strong.name} differ; "
                "use cbs or bon, which re-tokenise",
            )
        if not requests:
            return []
        start = time.perf_counter()
        sampler, stopper = Sampler(sample, strong.device), Stopper(strong, sample.stop)
        computes = [Compute() for _ in requests]
        rollout = Rollout(
            [strong, guide.tuned, guide.untuned],
            sampler,
            stopper,
            [sampler.generator(r.seed) for r in requests],
            computes,
            combine=self.combine,
        )
        templates = (template or Template(), guide.template, guide.template)
        prompt_ids = [
            [lm.encode_prompt(t, r.prompt, sample.max_new_tokens) for r in requests]
            for lm, t in zip(rollout.models, templates, strict=True)
        ]
        rollout.prefill(prompt_ids)
        rollout.advance(sample.max_new_tokens, final=True)
        seconds = (time.perf_counter() - start) / len(requests)
        outputs = []
        for request, tokens, why, compute in zip(requests, rollout.row_tokens, rollout.reasons, computes, strict=True):
            compute.seconds = seconds
            reason = why or LENGTH
            outputs.append(Output(request.id, stopper.text(tokens, reason), tokens, reason, compute=compute))
        return outputs
