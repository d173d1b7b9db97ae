"""The guide's tuned model sampled alone: the reference line the paper draws in Figs. 3 and 4.

It answers "is the search better than just using the small tuned model?". A study gives it one cell per task and
seed, whatever the strong models; the runner decodes it with the guide's tuned model and the guide's template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from baselines.sampling import Plain

if TYPE_CHECKING:
    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.types import Output, Request, SampleConfig, Template


@dataclass(frozen=True)
class GuideAlone:
    """Plain sampling of the guide's tuned model (the study needs a guide to know which model that is)."""

    name: ClassVar[str] = "guide"
    needs_guide: ClassVar[bool] = True
    uses_guide_model: ClassVar[bool] = True

    def label(self) -> str:
        return "guide"

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]:
        return Plain().decode(strong, requests, sample, template=template)
