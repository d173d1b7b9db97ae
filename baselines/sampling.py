"""Plain sampling from the strong model: the search with one hypothesis and one successor, no guide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.methods import SearchMethod


@dataclass(frozen=True)
class Plain(SearchMethod):
    """Sample one response per prompt (the paper's "base" method); any guide passed is ignored."""

    name: ClassVar[str] = "plain"
    needs_guide: ClassVar[bool] = False

    def label(self) -> str:
        return "plain"

    def shape(self) -> tuple[int, int, int | None]:
        return 1, 1, None
