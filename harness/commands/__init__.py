"""Subcommands of `w2s`: argument parsing here, work in the library (imported inside `run`)."""

from __future__ import annotations

import json
from typing import Any

from harness.errors import require


def parse_value(text: str) -> Any:
    """A command-line value as JSON where it parses (4, 0.5, null, true, [1, 2]), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs into a dict, values through `parse_value`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        require(bool(sep) and bool(key), f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def quiet_transformers() -> None:
    """No per-file progress bars from transformers (loading, saving): they would bury the run's own progress."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
