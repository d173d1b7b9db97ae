"""Plain sampling from the strong model: the search with one hypothesis and one successor, no guide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from harness.backends.hf import HFModel, Template
from harness.guide import Guide
from harness.search import chunk_beam_search
from harness.types import Output, Request, SampleConfig


@dataclass(frozen=True)
class Plain:
    """Sample one response per prompt (the paper's "base" method); any guide passed is ignored."""

    name: ClassVar[str] = "plain"
    needs_guide: ClassVar[bool] = False

    def label(self) -> str:
        return "plain"

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
            strong, requests, sample, width=1, successors=1, chunk_length=None, guide=None, template=template
        )
