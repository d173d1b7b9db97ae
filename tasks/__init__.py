"""Tasks: how each task's data loads, its prompt templates and its gold scorer. Looked up by name, lazily."""

from __future__ import annotations

import importlib

from harness.errors import require

TASKS: dict[str, str] = {
    "imdb": "tasks.imdb:IMDB",
    "tldr": "tasks.tldr:TLDR",
    "alpacaeval": "tasks.alpacaeval:AlpacaEval",
}


def task_class(name: str, where: str | None = None) -> type:
    """The task type `name`; `where` is the config entry naming it, for the error message."""
    hint = f" (or set {where}.task to one of them when {where.split('.')[-1]!r} is a label)" if where else ""
    require(name in TASKS, f"unknown task {name!r}; choose one of: {', '.join(TASKS)}{hint}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)
