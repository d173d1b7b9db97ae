"""Reproduce a figure from a recipe (configs/fig3-*.yaml): build its models step by step (each `w2s` command's
output cached under a hash of its command, inputs and code, so a second run reuses it), run its study, and write the
report (figures, table with paired differences, summary, and the built models' own metrics).

`--dry-run` prints every training step (cached or to build) and every cell of the study, and loads nothing.
"""

from __future__ import annotations

import argparse

HELP = "build a recipe's models (cached), run its study and write its report (make reproduce-fig3)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", metavar="RECIPE", help="recipe file, e.g. configs/fig3-mini.yaml")
    p.add_argument("--dry-run", action="store_true", help="print every step and cell; build, load and run nothing")
    p.add_argument("--zoo-only", action="store_true", help="build (or reuse) the models, then stop before the study")
    p.add_argument("--zoo", metavar="DIR", help="where step outputs are cached (default: the recipe's `zoo`)")
    p.add_argument("--out", metavar="DIR", help="the study's output directory (default: the recipe's study.out)")


def run(args: argparse.Namespace) -> int:
    import copy
    import shlex
    import subprocess
    import sys
    import time
    from pathlib import Path

    import yaml

    from harness.errors import UsageError
    from harness.preflight import check_output_dir, make_output_dir
    from harness.study import Study
    from training.recipe import build, load_recipe

    recipe = load_recipe(args.recipe, args.zoo, args.out)
    study = Study(copy.deepcopy(recipe.study), check_files=False)  # the config is checked before anything is built
    if args.dry_run:
        print(plan(recipe, study))
        return 0
    check_output_dir(recipe.zoo, "zoo directory", "give a writable --zoo DIR")
    check_output_dir(study.out, "study output", "give a writable --out DIR")
    start = time.perf_counter()
    records = build(recipe)
    print(f"zoo ready in {time.perf_counter() - start:.0f} s ({len(records)} steps under {recipe.zoo})")
    if args.zoo_only:
        return 0
    out = make_output_dir(study.out, "study output", "give a writable --out DIR")
    config = out / "study.yaml"
    config.write_text(yaml.safe_dump(recipe.study, sort_keys=False), encoding="utf-8")
    for argv in (["run", str(config)], ["report", str(out)]):
        print(f"w2s {shlex.join(argv)}", flush=True)
        code = subprocess.call([sys.executable, "-m", "harness.cli", *argv])
        if code != 0:
            raise UsageError(f"w2s {argv[0]} failed (exit {code}; its error is above); fix it and run again")
    from reports.zoo import write_zoo_table

    report = out / "report"
    zoo_table = write_zoo_table(records, [s.dir for s in recipe.steps], report / "zoo.md")
    print(f"reproduced {recipe.name} in {time.perf_counter() - start:.0f} s")
    for name in ("fig3.png", "fig3.pdf", "table.md", "summary.md"):
        print(f"  {report / name}")
    print(f"  {zoo_table} (the built models' perplexities and accuracies)")
    print(Path(report / "summary.md").read_text(encoding="utf-8"))
    return 0


def plan(recipe, study) -> str:
    """Every training step with its state and command line, then every cell of the study."""
    import shlex

    lines = [f"recipe {recipe.name}: {len(recipe.steps)} training steps cached under {recipe.zoo}"]
    for i, step in enumerate(recipe.steps, 1):
        state = "cached" if step.done else "to build"
        lines.append(f"  step {i} {step.name} [{state}] -> {step.dir}")
        lines.append(f"      w2s {shlex.join(step.resolved())}")
    models = study.config.models
    lines.append(f"study {study.config.study} -> {study.out}: seeds {study.config.seeds}, limit {study.config.limit}")
    for name, entry in models.items():
        lines.append(f"  model {name}: {entry.path}")
    for name, guide in study.config.guides.items():
        lines.append(f"  guide {name}: tuned {guide.tuned}, untuned {guide.untuned}, beta {guide.beta}")
    for name, task in study.tasks.items():
        lines.append(f"  task {name}: data {task.config.data}, gold {task.config.gold}")
    cells = study.cells()
    lines.append(f"{len(cells)} cells:")
    lines += [f"  {cell.title}" for cell in cells]
    return "\n".join(lines)
