"""Tasks: how each task's data loads, its prompt templates and its gold scorer. Looked up by name, lazily."""

from __future__ import annotations

import importlib

from harness.errors import require

TASKS: dict[str, str] = {
    "imdb": "tasks.imdb:IMDB",
    "tldr": "tasks.tldr:TLDR",
}


def task_class(name: str) -> type:
    require(name in TASKS, f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)
