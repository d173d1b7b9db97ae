"""Best-of-N: sample N complete responses and return the one the guide rewards most (CBS with W=1, K=N, L=inf)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from harness.backends.hf import HFModel, Template
from harness.guide import Guide
from harness.methods import positive_int, require_guide
from harness.search import chunk_beam_search
from harness.types import Output, Request, SampleConfig


@dataclass(frozen=True)
class BestOfN:
    """Rank N full samples by the guide's implicit reward."""

    n: int = 16

    name: ClassVar[str] = "bon"
    needs_guide: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("bon", "n", self.n)

    def label(self) -> str:
        return f"bon(N={self.n})"

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]:
        return chunk_beam_search(
            strong,
            requests,
            sample,
            width=1,
            successors=self.n,
            chunk_length=None,
            guide=require_guide(self.name, guide),
            template=template,
        )
