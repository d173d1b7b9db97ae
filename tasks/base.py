"""What every task shares: its examples, its options (data, models, templates, sampling) and how data loads."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.configs import option
from harness.errors import UsageError, require
from harness.types import SampleConfig


@dataclass(frozen=True)
class Example:
    """One task item: a stable id, the raw prompt, and a human reference where the task has one."""

    id: str
    prompt: str
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleOptions:
    """Sampling settings of a task (see harness.types.SampleConfig)."""

    max_new_tokens: int = option(50, "response budget in strong-model tokens")
    temperature: float = option(0.7, "sampling temperature")
    top_k: int = option(50, "top-k filtering; 0 disables it")
    top_p: float = option(1.0, "nucleus filtering; 1.0 disables it")
    stop: list[str] = option([], "strings that end a response (cut from its text)")

    def build(self) -> SampleConfig:
        return SampleConfig(self.max_new_tokens, self.temperature, self.top_k, self.top_p, tuple(self.stop))


@dataclass
class TaskConfig:
    """Options every task has. Tasks subclass it with their own defaults and extra options."""

    task: str | None = option(None, "the task type when this entry's name is a label (e.g. alpacaeval-zephyr)")
    strong: list[str] = option([], "strong models to run (names from `models`)")
    guide: str | None = option(None, "guide (name from `guides`), needed by bon, cbs and eft")
    tuned: dict[str, str] = option({}, "strong model name -> it tuned directly (DPO) on this task, for method `tuned`")
    base: dict[str, str] = option(
        {},
        "strong model name -> its untuned base checkpoint, which method `urial` decodes with (default: the strong "
        "model itself)",
        identity=False,  # a cell's identity names the model it decodes with
    )
    data: str = option("", "hub dataset id, or a local .jsonl / .jsonl.gz / .json file")
    split: str = option("test", "split to read when `data` is a hub dataset")
    gold: str = option("", "gold reward model: hub id or local directory")
    gold_dtype: str = option(
        "float32", "the gold model's dtype (auto, float32, bfloat16, float16): float32 unless set, whatever the study's"
    )
    gold_batch_size: int = option(16, "responses per gold-model forward pass")
    template: str = option("{prompt}", "strong model's prompt template")
    guide_template: str = option("{prompt}", "guide's prompt template")
    sample: SampleOptions = option(help="sampling settings", default_factory=SampleOptions)
    methods: list[Any] | None = option(
        None, "this task's methods, written as the top-level `methods`; default: those", identity=False
    )


def is_local(source: str) -> bool:
    """A data source is a local file when it exists or looks like a path; otherwise it is a hub id."""
    return (
        Path(source).expanduser().exists()
        or source.startswith(("/", ".", "~"))
        or source.endswith((".json", ".jsonl", ".gz"))
    )


def load_records(source: str, split: str) -> list[dict]:
    """Rows of a local json/jsonl(.gz) file, or of a hub dataset split."""
    require(bool(source), "a task has no `data`: give a hub dataset id or a local file")
    if is_local(source):
        path = Path(source).expanduser()
        require(path.is_file(), f"data file {source!r} does not exist; fix the task's `data` path")
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:  # unreadable, not gzip after all, not UTF-8
            raise UsageError(
                f"data file {source!r} cannot be read ({err}); give UTF-8 JSON lines or a JSON list"
            ) from None
        try:
            if text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.split("\n") if line.strip()]  # not splitlines: U+2028
        except json.JSONDecodeError as err:
            raise UsageError(f"data file {source!r} is not JSON lines or a JSON list ({err})") from None
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        require(bad is None, f"row {bad} of data file {source!r} is not a JSON object; each row must be one")
        return rows
    from datasets import load_dataset

    from harness import hub

    hub.offline()  # an unreachable hub: the local cache only, without 25 s of retries
    try:
        return load_dataset(source, split=split).to_list()
    except Exception as err:  # datasets raises many types for an unreachable or unknown dataset
        raise UsageError(
            f"cannot load dataset {source!r} split {split!r} ({str(err).splitlines()[0] if str(err) else err!r}); "
            "give a local file or a hub id this machine can reach"
        ) from err


def first_present(record: dict, keys: tuple[str, ...], source: str) -> str:
    """The first of `keys` a record has, which must be text; a clear error naming the file when it has none."""
    for key in keys:
        if record.get(key) is not None:
            value = record[key]
            require(isinstance(value, str), f"rows of {source!r} must have text in {key!r}, got {value!r:.40}")
            return value
    raise UsageError(f"rows of {source!r} have none of the fields {', '.join(keys)}; is it the right file?")
