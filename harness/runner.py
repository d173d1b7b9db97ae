"""Run a study cell by cell: decode, score, append each finished batch to disk, summarise a completed cell.

Nothing finished is ever lost: samples are fsynced batch by batch, a re-run skips the samples a cell already has,
and a cell resumed under different settings is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tqdm import tqdm

import harness
from harness import hub
from harness.errors import UsageError, require
from harness.identity import IDENTITY_VERSION, check_version
from harness.preflight import ModelFiles, check_output_dir, check_prompts, inspect_model
from harness.ranks import Ranks
from harness.scorers import GuideReward, Item, ScoreCache, Scorer
from harness.stats import summarize
from harness.store import (
    MANIFEST,
    MODEL_OUTPUTS,
    SUMMARY,
    SampleLog,
    cell_lock,
    read_json,
    read_samples,
    write_json,
)
from harness.study import Cell, Study
from harness.types import APIModelSpec, ModelSpec, Output, Request, local_dir
from tasks.base import Example, is_local

if TYPE_CHECKING:
    from harness.guide import Guide

T = TypeVar("T")
COMPUTE_KEYS = (
    "strong_tokens",
    "strong_forward_passes",
    "guide_tokens",
    "guide_forward_passes",
    "seconds",
    "requests",
    "billed_tokens",
)


def request_seed(seed: int, example_id: str) -> int:
    """A prompt's seed: from the cell's seed and the prompt's id alone, so batches and shards do not matter."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{example_id}".encode()).digest()[:4], "little")


def api_model(spec: APIModelSpec):
    """A client of a model behind an API (the openai package is imported only by studies that have one)."""
    from harness.backends.openai_api import CompletionsModel

    return CompletionsModel(spec)


class ModelPool:
    """Loads each model once and keeps only what the current cells need (one strong model at a time)."""

    def __init__(self):
        self.loaded = {}

    def get(self, spec, keep: Sequence = ()):
        """The model for `spec`, dropping loaded models that are neither it nor in `keep`."""
        from harness.backends.hf import HFModel

        for other in [s for s in self.loaded if s != spec and s not in keep]:
            del self.loaded[other]
        if spec not in self.loaded:
            self.loaded[spec] = api_model(spec) if isinstance(spec, APIModelSpec) else HFModel.load(spec)
        return self.loaded[spec]


class Runner:
    """Runs every cell of a study in grid order; `progress=False` silences the progress bars."""

    def __init__(self, study: Study, progress: bool = True):
        self.study, self.progress = study, progress
        self.pool = ModelPool()
        self.ranks = Ranks()
        self._cache: ScoreCache | None = None  # opened with the first cell: a refused run writes nothing
        self.examples: dict[str, list[Example]] = {}
        self.inspected: dict[ModelSpec | APIModelSpec, ModelFiles | None] = {}
        self.unmade: list[str] | None = None  # a dry run's checks that needed the unreachable hub (None: refuse)

    def run(self, cells: Sequence[Cell] | None = None) -> list[Path]:
        """Run (or resume) the given cells, by default every cell of the study; returns their directories."""
        cells = self.study.cells() if cells is None else list(cells)
        self.preflight(cells)
        try:
            for i, cell in enumerate(cells, 1):
                self.run_cell(cell, f"[{i}/{len(cells)}] ")
        finally:
            if self._cache is not None:
                self._cache.close()
        if self.ranks.main:
            self.judge(cells)
        return [c.dir for c in cells]

    def judge(self, cells: Sequence[Cell]) -> None:
        """Judge every finished cell of a task with judges against the task's references (harness.judging); the
        decoding models are dropped first, so a local judge has the device to itself."""
        from harness.alpaca import LCFiles
        from harness.judging import judge_cell

        judged = [c for c in cells if self.study.task_judges(c.task) and (c.dir / MODEL_OUTPUTS).exists()]
        if judged:
            self.pool.loaded.clear()
        for cell in judged:
            task = self.study.tasks[cell.task].config
            references = [
                {"instruction": e.prompt, "output": e.reference, "generator": e.meta.get("generator", "reference")}
                for e in self._examples(cell.task)
            ]
            files = LCFiles(task.df_gamed or None, task.instruction_difficulty or None)
            for judge in self.study.task_judges(cell.task):
                judge_cell(cell.dir, judge, references, files, progress=self.progress)

    def preflight(self, cells: Sequence[Cell], dry_run: bool = False) -> None:
        """Every check the run can make before it loads model weights, so a mistake costs seconds, not a half-done
        study. Reads data, configs, tokenizers and manifests; writes nothing (`w2s run --dry-run` runs it too).

        A dry run goes on where a hub model or dataset is neither cached nor reachable: the checks that needed it are
        listed in `unmade` instead (a real run refuses)."""
        require(cells, "no cells selected; check --shard and the config's tasks, strong models and methods")
        self.unmade = [] if dry_run else None
        check_output_dir(self.study.out, "out", "set `out` to a directory you can write")
        for task in dict.fromkeys(c.task for c in cells):
            self._check_task(task, [c for c in cells if c.task == task])
        for cell in cells:  # last: a cell's identity may read the data and model files checked above
            self._check_resume(cell)

    def _check_task(self, task: str, cells: list[Cell]) -> None:
        """One task's checks, for the cells selected: its data, every model they use, and its gold model."""
        study = self.study
        # the data: rows with the fields the task reads, unique ids
        data = study.tasks[task].config.data
        examples = self._hub_check(
            lambda: self._examples(task), data, f"data {data}", "its rows and the prompts' lengths"
        )
        prompts = [e.prompt for e in examples or []]
        # every model that chats has a chat template (which the config may supply)
        guides = self._guide_names(task)
        for name in sorted({*(c.strong for c in cells), *guides}):
            files = self._files(study.specs[name]) if study.config.models[name].chat else None
            require(
                not study.config.models[name].chat or files is None or files.tokenizer.chat_template,
                f"model {name} ({study.specs[name].path}) has no chat template; give one with "
                f"models.{name}.chat_template (a Jinja string or a file) or set models.{name}.chat: false",
            )
        # every prompt, in each model's template, leaves room for the response in that model's context
        # (a model behind an API: its server is asked instead, whether it answers, takes the key and has the model)
        readers = [(study.cell_model(c), study.cell_template(c)) for c in cells]
        readers += [(study.specs[g], study.guide_template(task)) for g in guides]
        for spec, template in dict.fromkeys(readers):
            if isinstance(spec, APIModelSpec):
                self._check_api(spec)
            elif (files := self._files(spec)) is not None:
                check_prompts(files, template, prompts, study.tasks[task].config.sample.max_new_tokens)
        # EFT adds the guides' logits to the strong model's, token id by token id
        for cell, guide in ((c, g) for c in cells if c.method.name == "eft" for g in guides):
            strong, other = self._files(study.cell_model(cell)), self._files(study.specs[guide])
            if strong is None or other is None:
                continue
            require(
                strong.tokenizer.get_vocab() == other.tokenizer.get_vocab(),
                f"method eft needs guides that share the strong model's vocabulary, but in task {task} {guide} "
                f"and {cell.strong} differ; drop eft or use a guide with {cell.strong}'s tokenizer",
            )
        # the gold model's files and labels
        gold = study.gold_scorer(task)
        if hasattr(gold, "check"):
            gold.check()
        # the judges: an API judge's key is in the environment, a local judge's files are a reward model's
        for judge in study.task_judges(task):
            judge.check()

    def _check_api(self, spec: APIModelSpec) -> None:
        """The key is in its variable and the server answers with the model (once per model)."""
        if spec not in self.inspected:
            api_model(spec).check()
            self.inspected[spec] = None

    def _files(self, spec: ModelSpec) -> ModelFiles | None:
        """A model's tokenizer and config, its device and directory checked (once per model); None where a dry run
        could not reach it on the hub."""
        if spec not in self.inspected:
            self.inspected[spec] = self._hub_check(
                lambda: inspect_model(spec),
                spec.path,
                f"model {spec.path}",
                "its files, chat template, vocabulary and prompt lengths",
            )
        return self.inspected[spec]

    def _hub_check(self, check: Callable[[], T], source: str, what: str, unchecked: str) -> T | None:
        """`check()`, except that a dry run notes, rather than refuses, a hub source it cannot reach (None); the
        note says what went `unchecked`. Prompt lengths need the data and the model both."""
        try:
            return check()
        except UsageError:
            if self.unmade is None or local_dir(source) is not None or is_local(source) or not hub.offline():
                raise
            note = f"{what} is not in the local cache and the hub cannot be reached: {unchecked} were not checked"
            if not any(n.startswith(what) for n in self.unmade):
                self.unmade.append(note)
            return None

    def run_cell(self, cell: Cell, position: str = "") -> None:
        """Run (or resume) one cell; `position` prefixes its progress bar. Under `accelerate launch` every process
        decodes its share of each batch (harness.ranks) and the main process alone holds the lock and writes."""
        examples, ranks = self._examples(cell.task), self.ranks
        with cell_lock(cell.dir) if ranks.main else nullcontext():
            if ranks.main:
                self._check_resume(cell)
                if not (cell.dir / MANIFEST).exists():
                    self._write_manifest(cell)
                log = SampleLog(cell.dir)  # (cuts a torn last line before the others read the file)
            ranks.wait()
            done = {r["id"] for r in (log.records if ranks.main else read_samples(cell.dir))}
            pending = [e for e in examples if e.id not in done]
            if pending:
                guide = self._guide(cell.task)
                decode, scorers = self._decoder(cell, guide), self._scorers(cell, guide)
                bar = tqdm(
                    total=len(examples), initial=len(examples) - len(pending), desc=position + cell.title,
                    unit="sample", disable=not self.progress or not ranks.main, file=sys.stderr, dynamic_ncols=True,
                )  # fmt: skip
                size = self.study.config.batch_size * ranks.count  # each process decodes batch_size prompts
                for start in range(0, len(pending), size):
                    batch = pending[start : start + size]
                    mine = ranks.split(batch)
                    outputs = decode([Request(e.id, e.prompt, request_seed(cell.seed, e.id)) for e in mine])
                    records = ranks.gather(self._records(cell, mine, outputs, scorers) if mine else [])
                    if ranks.main:
                        log.append(records)
                    bar.update(len(batch))
                bar.close()
            if ranks.main:
                wanted = {e.id for e in examples}
                records = [r for r in log.records if r["id"] in wanted]
                self._summarise(cell, records, len(examples))
                if len(records) == len(examples):
                    self._finish(cell, examples, records)
        ranks.wait()

    def _finish(self, cell: Cell, examples: list[Example], records: list[dict]) -> None:
        """After a cell's last sample: the task's model_outputs.json (alpaca_eval's format), where it has one."""
        task = self.study.tasks[cell.task]
        if hasattr(task, "model_outputs"):
            generator = cell.dir.relative_to(self.study.out).as_posix()
            rows = task.model_outputs(examples, {r["id"]: r["response"] for r in records}, generator)
            write_json(cell.dir / MODEL_OUTPUTS, rows)

    def _examples(self, task: str) -> list[Example]:
        """The task's examples, loaded once; their ids must be unique, since resuming goes by id."""
        if task not in self.examples:
            examples = self.study.tasks[task].examples(self.study.config.limit)
            data = self.study.tasks[task].config.data
            require(
                examples,
                f"task {task} has no examples: its data {data!r} has no rows; give a file (or split) with at least one",
            )
            repeated = sorted(i for i, n in Counter(e.id for e in examples).items() if n > 1)[:3]
            require(not repeated, f"task {task}'s data repeats example ids ({', '.join(repeated)}); ids must be unique")
            self.examples[task] = examples
        return self.examples[task]

    def _decoder(self, cell: Cell, guide: Guide | None):
        """A function from requests to outputs for this cell, with its models loaded."""
        study, task = self.study, self.study.tasks[cell.task].config
        keep = [study.specs[n] for n in self._guide_names(cell.task)]
        strong = self.pool.get(study.cell_model(cell), keep=keep)
        template, sample = study.cell_template(cell), task.sample.build()

        def decode(requests: list[Request]) -> list[Output]:
            return cell.method.decode(strong, requests, sample, template=template, guide=guide)

        return decode

    def _guide_names(self, task: str) -> list[str]:
        name = self.study.tasks[task].config.guide
        if name is None:
            return []
        g = self.study.config.guides[name]
        return [g.tuned, g.untuned]

    def _guide(self, task: str) -> Guide | None:
        from harness.guide import Guide

        names = self._guide_names(task)
        if not names:
            return None
        specs = [self.study.specs[n] for n in names]
        tuned, untuned = (self.pool.get(s, keep=[*specs, *self.pool.loaded]) for s in specs)
        entry = self.study.config.guides[self.study.tasks[task].config.guide]
        template = self.study.guide_template(task)
        return Guide(
            tuned, untuned, entry.beta, template, retokenize=entry.retokenize, eos_at_budget=entry.eos_at_budget
        )

    def _scorers(self, cell: Cell, guide: Guide | None) -> list[Scorer]:
        """Gold first (for tasks that score each sample with one), then the guide's reward (the proxy) and the task's
        reference metrics."""
        task, gold = self.study.tasks[cell.task], self.study.gold_scorer(cell.task)
        scorers: list[Scorer] = [gold] if gold is not None else []
        if guide is not None:
            scorers.append(GuideReward(guide, batch_size=task.config.gold_batch_size))
        return scorers + task.reference_scorers()

    def _records(self, cell: Cell, batch: list[Example], outputs: list[Output], scorers: list[Scorer]) -> list[dict]:
        items = [
            Item(e.prompt, o.text, o.finish_reason != "length", e.reference, o.stop)
            for e, o in zip(batch, outputs, strict=True)
        ]
        if self._cache is None:
            self._cache = ScoreCache(self.study.out / "scores.sqlite")
        scores = {s.key: self._cache.score(s, items) for s in scorers}
        return [
            {
                "id": e.id,
                "seed": cell.seed,
                "request_seed": request_seed(cell.seed, e.id),
                "prompt": e.prompt,
                "response": o.text,
                "finish_reason": o.finish_reason,
                "stop": o.stop,
                "tokens": len(o.tokens),
                "compute": o.compute.as_dict(),
                "trace": o.trace,
                "scores": {key: values[i] for key, values in scores.items()},
            }
            for i, (e, o) in enumerate(zip(batch, outputs, strict=True))
        ]

    def _check_resume(self, cell: Cell) -> None:
        """Refuse a cell whose manifest records another identity version or other settings (reads only)."""
        path = cell.dir / MANIFEST
        if not path.exists():
            return
        try:
            manifest = read_json(path)
            old, version = manifest.get("identity"), manifest.get("identity_version", 1)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise UsageError(
                f"cell {cell.dir} has an unreadable {MANIFEST} ({err}); delete that cell to redo it"
            ) from None
        check_version(version, cell.dir)
        identity = json.loads(json.dumps(self.study.identity(cell)))  # as it reads back: tuples become lists
        if old != identity:
            key = _first_difference(old, identity)
            changed = ": the files at that path have changed" if key.endswith("fingerprint") else ""
            raise UsageError(
                f"cell {cell.dir} was run with other settings ({key} differs{changed}); "
                "point `out` elsewhere or delete that cell to start it afresh"
            )

    def _write_manifest(self, cell: Cell) -> None:
        """Record what the cell's samples depend on and what produced them."""
        write_json(
            cell.dir / MANIFEST,
            {
                "study": self.study.config.study,
                "cell": cell.describe(),
                "identity_version": IDENTITY_VERSION,
                "identity": json.loads(json.dumps(self.study.identity(cell))),
                "config": self.study.resolved(),
                "versions": versions(),
                "git_commit": git_commit(),
                "device": device_name(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )

    def _summarise(self, cell: Cell, records: list[dict], planned: int) -> None:
        """Write summary.json once every planned sample is in (and again whenever that set changes). A cell's log may
        hold more samples than the plan (a lower `limit`) or fewer (a higher one, not yet run); the summary names the
        ones it covers."""
        path = cell.dir / SUMMARY
        ids = [r["id"] for r in records]
        if len(records) < planned or (path.exists() and read_json(path).get("ids") == ids):
            return
        keys = sorted({k for r in records for k in r["scores"]})
        compute = {k: summarize([r["compute"].get(k, 0) for r in records]) for k in COMPUTE_KEYS}
        compute["response_tokens"] = summarize([r["tokens"] for r in records])
        write_json(
            path,
            {
                "cell": cell.describe(),
                "n": len(records),
                "ids": ids,  # the samples summarised: reports read these and no others
                "metrics": {k: summarize([r["scores"][k] for r in records if k in r["scores"]]) for k in keys},
                "compute": compute,
            },
        )


def _first_difference(old, new, where: str = "") -> str:
    """The dotted path of the first place two nested values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
    return where or "settings"


def versions() -> dict[str, str]:
    packages = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "trl", "numpy")
    found = {"python": platform.python_version(), "w2s-harness": harness.__version__}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_commit() -> str | None:
    """The harness checkout's commit (with "+dirty" when it has uncommitted changes), or None outside git."""
    root = Path(harness.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
