"""Decoding methods by name. The map holds "module:Class" strings so listing methods never imports torch."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.errors import UsageError, require

if TYPE_CHECKING:
    from harness.backends.hf import HFModel, Template
    from harness.guide import Guide
    from harness.types import Output, Request, SampleConfig

METHODS: dict[str, str] = {
    "plain": "baselines.sampling:Plain",
    "bon": "baselines.best_of_n:BestOfN",
    "cbs": "harness.search:CBS",
    "eft": "baselines.eft:EFT",
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


def require_guide(method: str, guide: Guide | None) -> Guide:
    require(guide is not None, f"method {method!r} needs a guide (a tuned and an untuned model)")
    return guide
