"""Decoding methods by name. The map holds "module:Class" strings so listing methods never imports torch."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.configs import option
from harness.errors import UsageError, require

if TYPE_CHECKING:
    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.rollout import Steering
    from harness.types import Output, Request, SampleConfig, Template

METHODS: dict[str, str] = {
    "plain": "baselines.sampling:Plain",
    "bon": "baselines.best_of_n:BestOfN",
    "cbs": "harness.methods:CBS",
    "eft": "baselines.eft:EFT",
    "tuned": "baselines.tuned:Tuned",
    "guide": "baselines.guide_alone:GuideAlone",
    "urial": "baselines.urial:Urial",
}


class Method(Protocol):
    """A decoder: its parameters are dataclass fields, validated on construction."""

    name: ClassVar[str]
    needs_guide: ClassVar[bool]

    def label(self) -> str:
        """Short name with parameters, e.g. "cbs(W=4,K=4,L=5)", as figures and tables show it."""
        ...

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]: ...


def method_class(name: str) -> type:
    require(name in METHODS, f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_method(name: str, **params: Any) -> Method:
    """Build a method from its name and parameters, rejecting unknown ones by name."""
    cls = method_class(name)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(fields))
    require(
        not unknown,
        f"method {name!r} has no parameter {', '.join(unknown)}; its parameters: {', '.join(fields) or 'none'}",
    )
    return cls(**params)


def positive_int(method: str, field: str, value: Any, *, allow_none: bool = False) -> None:
    """Reject anything but an int >= 1 (or None where that means "no limit") with a one-line error."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " or null for the whole budget" if allow_none else ""
        raise UsageError(f"{method} {field} must be an integer >= 1{hint}, got {value!r}")


def strong_template(method: Method, template: Template) -> Template:
    """The template the strong model reads under `method`: the task's, or the one a method builds around it (urial's
    in-context prompt)."""
    prompt = getattr(method, "prompt", None)
    return prompt(template) if prompt is not None else template


def require_guide(method: str, guide: Guide | None) -> Guide:
    require(guide is not None, f"method {method!r} needs a guide (a tuned and an untuned model)")
    return guide


class SearchMethod:
    """A method that is a configuration of chunk-level beam search: it says its W, K and L, and whether other models
    steer each token (EFT)."""

    name: ClassVar[str]
    needs_guide: ClassVar[bool] = True
    branch_finished: bool = False  # a finished hypothesis takes one slot; CBS may choose the paper code's way

    def shape(self) -> tuple[int, int, int | None]:
        """(W, K, L); L=None is one chunk of the whole budget."""
        raise NotImplementedError

    def steering(self, strong: HFModel, guide: Guide | None) -> Steering | None:
        """Models whose logits combine with the strong model's at every token; None for sampling the strong model."""
        return None

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]:
        from harness.search import ChunkBeamSearch

        guide = require_guide(self.name, guide) if self.needs_guide else None
        steering = self.steering(strong, guide)
        ranker = None if steering is not None else guide  # a steered decoder has already used the guide: no ranking
        search = ChunkBeamSearch(
            strong, requests, sample, self.shape(), ranker, template, steering, self.branch_finished
        )
        return search.run()


@dataclass(frozen=True)
class CBS(SearchMethod):
    """Chunk-level beam search: W hypotheses, K successors each, chunks of L tokens (None: the whole budget)."""

    width: int = option(4, "W: hypotheses kept per prompt")
    successors: int = option(4, "K: chunks sampled from each kept hypothesis")
    chunk_length: int | None = option(5, "L: tokens per chunk; null: one chunk of the whole budget")
    branch_finished: bool = option(
        False,
        "a finished hypothesis branches K ways like an open one, so its copies can fill several of the W slots, as "
        "the paper's code does (true); false: it holds one slot",
    )

    name: ClassVar[str] = "cbs"

    def __post_init__(self) -> None:
        positive_int("cbs", "width (W)", self.width)
        positive_int("cbs", "successors (K)", self.successors)
        positive_int("cbs", "chunk_length (L)", self.chunk_length, allow_none=True)
        require(
            isinstance(self.branch_finished, bool),
            f"cbs branch_finished must be true or false, got {self.branch_finished!r}",
        )

    def label(self) -> str:
        branch = ",branch_finished" if self.branch_finished else ""
        return f"cbs(W={self.width},K={self.successors},L={self.chunk_length or 'inf'}{branch})"

    def shape(self) -> tuple[int, int, int | None]:
        return self.width, self.successors, self.chunk_length
