"""Emulated fine-tuning (Mitchell et al., ICLR 2024): sample each token from the strong model's logits shifted by
beta times the tuned-minus-untuned log-ratio. Needs guides that share the strong model's vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from harness.errors import require
from harness.methods import SearchMethod

if TYPE_CHECKING:
    import torch

    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.rollout import Steering


@dataclass(frozen=True)
class EFT(SearchMethod):
    """Per token: log p_strong + beta * (log p_tuned - log p_untuned), then the usual temperature/top-k/top-p. It is
    plain sampling (W=K=1) with the guide's models reading every token beside the strong model."""

    beta: float = 1.0

    name: ClassVar[str] = "eft"

    def __post_init__(self) -> None:
        require(
            isinstance(self.beta, int | float) and not isinstance(self.beta, bool) and self.beta >= 0,
            f"eft beta must be a number >= 0, got {self.beta!r}",
        )

    def label(self) -> str:
        return f"eft(beta={self.beta:g})"

    def shape(self) -> tuple[int, int, int | None]:
        return 1, 1, None

    def steering(self, strong: HFModel, guide: Guide | None) -> Steering:
        from harness.rollout import Steering

        for lm in (guide.tuned, guide.untuned):
            require(
                lm.same_vocab(strong),
                f"eft needs guides that share the strong model's vocabulary, but {lm.name} and {strong.name} differ; "
                "use cbs or bon, which re-tokenise",
            )
        return Steering([(guide.tuned, guide.template), (guide.untuned, guide.template)], self.combine)

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
