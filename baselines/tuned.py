"""Direct tuning: the strong model itself fine-tuned (DPO) on the task's preferences, then sampled plainly.

The decoding is plain sampling; what differs is the model. A study names, per task, each strong model's tuned
checkpoint (`tasks.<task>.tuned.<strong>`), and the runner decodes this method's cells with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from baselines.sampling import Plain


@dataclass(frozen=True)
class Tuned(Plain):
    """Plain sampling of the directly tuned strong model."""

    name: ClassVar[str] = "tuned"
    uses_tuned_model: ClassVar[bool] = True

    def label(self) -> str:
        return "tuned"
