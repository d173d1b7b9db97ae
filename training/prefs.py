"""Preference pairs labelled by a gold reward, the way ZHZisZZ/imdb_preference was made: for each prompt of a task,
sample two continuations from a model (plain sampling with the engine, each with its own derived seed), score both
with the task's gold reward, and draw which is preferred from the Bradley-Terry model P(a > b) = sigmoid(r_a - r_b)
(or take the higher reward, `label="argmax"`). The result is trl's prompt/chosen/rejected JSON lines, with both
scores and the preference probability on every row, so a pair can be traced to its draw.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import require
from harness.preflight import check_output_dir, check_prompts, inspect_model, make_output_dir
from harness.types import ModelSpec, Request, SampleConfig, Template

LABELS = ("bt", "argmax")


@dataclass(frozen=True)
class PrefsSettings:
    """What a preference file depends on. Task options left None take the task's defaults (as a study's would)."""

    task: str
    model: str
    out: Path
    data: str | None = None
    split: str | None = None
    gold: str | None = None
    limit: int | None = None
    seed: int = 0
    label: str = "bt"
    template: str | None = None  # default: the task's guide template (the model is a guide-sized one)
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    batch_size: int = 16
    device: str | None = None
    dtype: str = "auto"
    task_options: dict[str, Any] = field(default_factory=dict)  # any other task option, as in a study config


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def first_preferred(r_a: float, r_b: float, draw: float, label: str) -> bool:
    """Whether response a is preferred: a Bradley-Terry draw (`draw` uniform in [0, 1)) or the higher reward."""
    if label == "argmax":
        return r_a >= r_b
    return draw < sigmoid(r_a - r_b)


def label_draw(seed: int, example_id: str) -> float:
    """The uniform number that decides a prompt's label: from the seed and the prompt's id alone."""
    return random.Random(f"prefs-label/{seed}/{example_id}").random()


@dataclass
class PrefsJob:
    """Checked settings: the task, its examples, the sampling settings and the model to sample."""

    settings: PrefsSettings
    task: Any
    examples: list
    sample: SampleConfig
    template: Template
    spec: ModelSpec


def prepare(s: PrefsSettings) -> PrefsJob:
    """Check everything before any weights load: task options, the output file, the data, the model and the gold."""
    from harness.configs import build
    from tasks import task_class

    require(s.label in LABELS, f"unknown --label {s.label!r}; choose bt (Bradley-Terry draws) or argmax")
    require(s.limit is None or s.limit >= 1, f"--limit must be >= 1, got {s.limit}")
    require(s.batch_size >= 1, f"--batch-size must be >= 1, got {s.batch_size}")
    out = Path(s.out).expanduser()
    require(not out.is_dir(), f"output {str(out)!r} is a directory; give a file name, e.g. {out / 'prefs.jsonl'}")
    check_output_dir(out.parent, "output directory", "give another output file")
    cls = task_class(s.task)
    given = {"data": s.data, "split": s.split, "gold": s.gold}
    options = {**s.task_options, **{k: v for k, v in given.items() if v is not None}}
    config = build(cls.Config, options, f"tasks.{s.task}")
    task = cls(config)
    sample = config.sample
    tweaks = {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p}
    sample = SampleConfig(
        **{k: getattr(sample, k) if v is None else v for k, v in tweaks.items()}, stop=tuple(sample.stop)
    )
    template = Template(s.template if s.template is not None else config.guide_template)
    examples = task.examples(s.limit)
    require(examples, f"task {s.task} has no prompts in {config.data!r}; give data with rows")
    spec = ModelSpec(s.model, dtype=s.dtype, device=s.device)
    check_prompts(inspect_model(spec), template, [e.prompt for e in examples], sample.max_new_tokens)
    task.gold_scorer(s.device).check()
    return PrefsJob(s, task, examples, sample, template, spec)


def build_pairs(job: PrefsJob, progress: bool = True) -> Path:
    """Sample, score and label every prompt's pair; write the file whole (atomically) and return its path."""
    from tqdm import tqdm

    from baselines.sampling import Plain
    from harness.backends.hf import HFModel
    from harness.runner import request_seed
    from harness.scorers import Item

    s = job.settings
    model = HFModel.load(job.spec)
    texts: dict[str, list[str]] = {}
    bar = tqdm(total=len(job.examples), desc="sampling pairs", disable=not progress)
    for start in range(0, len(job.examples), s.batch_size):
        batch = job.examples[start : start + s.batch_size]
        requests = [
            Request(f"{e.id}/{side}", e.prompt, request_seed(s.seed, f"{e.id}/{side}")) for e in batch for side in "ab"
        ]
        outputs = Plain().decode(model, requests, job.sample, template=job.template)
        for e, a, b in zip(batch, outputs[::2], outputs[1::2], strict=True):
            texts[e.id] = [a.text, b.text]
        bar.update(len(batch))
    bar.close()
    del model
    gold = job.task.gold_scorer(s.device)
    items = [Item(e.prompt, t, reference=e.reference) for e in job.examples for t in texts[e.id]]
    scores = gold(items)
    rows = [
        pair_row(e, texts[e.id], scores[2 * i : 2 * i + 2], job.template, s)
        for i, e in enumerate(job.examples)
    ]  # fmt: skip
    out = Path(s.out).expanduser()
    make_output_dir(out.parent, "output directory", "give another output file")
    return write_jsonl(out, rows)


def pair_row(example, texts: Sequence[str], scores: Sequence[float], template: Template, s: PrefsSettings) -> dict:
    """One trl preference row: the prompt as the model saw it, the preferred and the other response, their gold
    scores and the probability that the chosen one wins under Bradley-Terry."""
    (a, b), (r_a, r_b) = texts, scores
    a_wins = first_preferred(r_a, r_b, label_draw(s.seed, example.id), s.label)
    (chosen, r_c), (rejected, r_r) = ((a, r_a), (b, r_b)) if a_wins else ((b, r_b), (a, r_a))
    return {
        "id": example.id,
        "prompt": template.text.replace("{prompt}", example.prompt),
        "chosen": chosen,
        "rejected": rejected,
        "score_chosen": r_c,
        "score_rejected": r_r,
        "p_chosen": sigmoid(r_c - r_r),
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines through a temporary file, so a killed run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
