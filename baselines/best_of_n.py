"""Best-of-N: sample N complete responses and return the one the guide rewards most (CBS with W=1, K=N, L=inf)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.methods import SearchMethod, positive_int


@dataclass(frozen=True)
class BestOfN(SearchMethod):
    """Rank N full samples by the guide's implicit reward."""

    n: int = 16

    name: ClassVar[str] = "bon"

    def __post_init__(self) -> None:
        positive_int("bon", "n", self.n)

    def label(self) -> str:
        return f"bon(N={self.n})"

    def shape(self) -> tuple[int, int, int | None]:
        return 1, self.n, None
