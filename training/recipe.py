"""A reproduction recipe: ordered training steps, each a `w2s` command, then a study over what they built.

A recipe is a YAML file (configs/fig3-*.yaml):

    recipe: fig3-mini
    zoo: zoo                      # where step outputs are kept, each as <zoo>/<step>-<hash>
    steps:                        # run in order; ${out} is the step's own output, ${name} an earlier step's
      - {name: tokenizer, run: "train tokenizer ${out} --text data/imdb/train_12k.jsonl.gz --vocab 4096"}
      - {name: guide-base, run: "train lm ${out} --tokenizer ${tokenizer} --layers 2 --dim 128"}
    study: {...}                  # a study config (w2s run --explain); ${name} in any string is a step's output

A step's hash covers its command line, the hashes of the steps it names, the content of every local file or
directory its arguments name, and the source of the training package (but for this module, which only runs steps).
A finished step is kept under that hash, so a second run reuses it, and any change to what it depends on builds it
afresh (beside the old one). A step killed part-way keeps its scratch directory, which a rerun carries on in.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError, require
from harness.identity import file_digest, fingerprint

RECIPE_VERSION = 1  # bump when what a step's hash covers changes
DONE = ".step.json"  # written last into a finished step's directory (hidden: not part of a model's fingerprint)
REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Step:
    """One training step: its name, its `w2s` arguments (with ${...} references), and its content hash."""

    name: str
    argv: tuple[str, ...]
    hash: str
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / DONE).is_file()

    def resolved(self, out: Path | None = None) -> list[str]:
        """The arguments with ${out} (this step's directory, or `out`) filled in; references are already filled."""
        return [a.replace("${out}", local(out or self.dir)) for a in self.argv]


@dataclass
class Recipe:
    """A loaded recipe: its steps in order, with their hashes, and the study with step references filled in."""

    name: str
    path: Path
    zoo: Path
    steps: list[Step]
    study: dict[str, Any]

    def outputs(self) -> dict[str, Path]:
        return {s.name: s.dir for s in self.steps}


def load_recipe(path: str | Path, zoo: str | None = None, out: str | None = None) -> Recipe:
    """Read and check a recipe; `zoo` and `out` override where steps and the study write."""
    path = Path(path)
    require(path.is_file(), f"recipe {str(path)!r} not found; give a recipe file such as configs/fig3-mini.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot read recipe {str(path)!r}: {first}") from None
    require(isinstance(raw, dict), f"recipe {str(path)!r} must be a YAML mapping with recipe, zoo, steps and study")
    unknown = sorted(set(raw) - {"recipe", "zoo", "steps", "study"})
    if unknown:
        raise UsageError(f"recipe {path}: unknown key {unknown[0]!r}; the keys are recipe, zoo, steps, study")
    name = raw.get("recipe")
    require(isinstance(name, str) and NAME.fullmatch(name) is not None, f"recipe {path}: `recipe` must be a name")
    root = Path(zoo or raw.get("zoo") or "zoo")
    entries = raw.get("steps") or []
    require(isinstance(entries, list), f"recipe {path}: `steps` must be a list of {{name, run}}")
    code = source_digest()
    steps: list[Step] = []
    for i, entry in enumerate(entries):
        steps.append(_step(entry, f"recipe {path}: steps[{i}]", {s.name: s for s in steps}, root, code))
    study = raw.get("study")
    require(isinstance(study, dict), f"recipe {path}: `study` must be a study config (see w2s run --explain)")
    study = fill(copy.deepcopy(study), {s.name: local(s.dir) for s in steps}, f"recipe {path}: study")
    if out is not None:
        study["out"] = out
    study.setdefault("out", f"runs/{name}")
    return Recipe(name, path, root, steps, study)


def _step(entry: Any, where: str, earlier: dict[str, Step], zoo: Path, code: str) -> Step:
    """One step checked and hashed; the references it makes must be to earlier steps."""
    require(isinstance(entry, dict) and set(entry) == {"name", "run"}, f"{where} must be {{name: ..., run: ...}}")
    name, run = entry["name"], entry["run"]
    require(isinstance(name, str) and NAME.fullmatch(name) is not None, f"{where}: name must be letters, digits, _.-")
    require(name not in earlier and name != "out", f"{where}: step name {name!r} is used twice or reserved")
    require(isinstance(run, str) and run.strip(), f"{where}.run must be a w2s command line")
    try:
        argv = shlex.split(run)
    except ValueError as err:
        raise UsageError(f"{where}.run cannot be split like a shell line ({err})") from None
    if argv[0] == "w2s":
        argv = argv[1:]
    refs = {r for a in argv for r in REF.findall(a)} - {"out"}
    unknown = sorted(refs - set(earlier))
    if unknown:
        raise UsageError(f"{where} ({name}) refers to ${{{unknown[0]}}}, which no earlier step builds")
    filled = tuple(REF.sub(lambda m: local(earlier[m[1]].dir) if m[1] in earlier else m[0], a) for a in argv)
    identity = {
        "version": RECIPE_VERSION,
        "argv": [REF.sub(lambda m: m[0] if m[1] == "out" else earlier[m[1]].hash, a) for a in argv],
        "files": {a: fingerprint(a) for a in filled if "${" not in a and _local_input(a, zoo)},
        "code": code,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Step(name, filled, digest, zoo / f"{name}-{digest}")


def local(path: Path) -> str:
    """A path as text that reads as local, never as a hub id ("zoo/x" could be one; "./zoo/x" cannot)."""
    text = str(path)
    return text if path.is_absolute() or text.startswith(("./", "../", "~")) else f"./{text}"


def _local_input(arg: str, zoo: Path) -> bool:
    """An argument naming an existing local file or directory outside the zoo (the zoo's are named by hash)."""
    path = Path(arg).expanduser()
    if not path.exists():
        return False
    try:
        path.resolve().relative_to(zoo.resolve())
        return False
    except ValueError:
        return True


def fill(value: Any, outputs: dict[str, str], where: str) -> Any:
    """Replace ${step} in every string of a study config by that step's output directory."""
    if isinstance(value, str):
        unknown = [r for r in REF.findall(value) if r not in outputs]
        if unknown:
            raise UsageError(f"{where} refers to ${{{unknown[0]}}}, which no step builds")
        return REF.sub(lambda m: outputs[m[1]], value)
    if isinstance(value, list):
        return [fill(v, outputs, where) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, outputs, where) for k, v in value.items()}
    return value


def source_digest() -> str:
    """The training package's source: a change to how models are built builds them afresh. This module only runs
    steps (what their hash covers is RECIPE_VERSION's), so it is left out: changing it rebuilds nothing."""
    files = sorted(p for p in PACKAGE.rglob("*.py") if p.resolve() != Path(__file__).resolve())
    return hashlib.sha256(json.dumps([[p.name, file_digest(p)] for p in files]).encode()).hexdigest()


def build(recipe: Recipe, log: Callable[[str], None] = print) -> list[dict]:
    """Run every step not yet finished, in order; a finished step is reused. Returns each step's record."""
    records = []
    for i, step in enumerate(recipe.steps, 1):
        head = f"step {i}/{len(recipe.steps)} {step.name}"
        if step.done:
            log(f"{head}: cached in {step.dir}")
        else:
            log(f"{head}: w2s {shlex.join(step.resolved())}")
            run_step(step)
            log(f"{head}: built in {json.loads((step.dir / DONE).read_text())['seconds']:.0f} s")
        records.append(json.loads((step.dir / DONE).read_text(encoding="utf-8")))
    return records


def run_step(step: Step) -> None:
    """Run one step into a scratch directory, then move it into place: a killed step leaves nothing half-built.
    The scratch directory is named by the step's hash, so one a kill left behind holds this very command's work and
    is kept: a command that resumes (`w2s tune` from its checkpoints) carries on where it stopped."""
    partial = step.dir.with_name(f".{step.dir.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)  # a step's command writes its output in it, or files into it
    start = time.perf_counter()
    argv = step.resolved(partial)
    code = subprocess.call([sys.executable, "-m", "harness.cli", *argv], env=os.environ.copy())
    if code != 0:
        raise UsageError(
            f"step {step.name} failed (exit {code}; its error is above): w2s {shlex.join(argv)}; fix it and run "
            "again (finished steps are kept)"
        )
    require(partial.is_dir(), f"step {step.name} wrote nothing to its output ${{out}}; its command must write there")
    record = {"name": step.name, "hash": step.hash, "argv": list(step.argv), "seconds": time.perf_counter() - start}
    metrics = partial / "metrics.json"
    if metrics.is_file():
        record["metrics"] = json.loads(metrics.read_text(encoding="utf-8"))
    (partial / DONE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    shutil.rmtree(step.dir, ignore_errors=True)
    os.replace(partial, step.dir)
