"""Run a study: expand the config's grid of tasks x strong models x methods x seeds and run (or resume) each cell.

Each cell writes <out>/<task>/<strong>/<method>/seed-<seed>/ with samples.jsonl (one line per sample), manifest.json
and, once complete, summary.json; a task with judges (alpacaeval) then has each finished cell judged against its
references, into judge-<name>/ (annotations.json, winrate.json). Re-running skips finished samples and verdicts.
`--dry-run` makes every check the run makes before it loads a model (data, model files, devices, prompt lengths,
resuming, judges' keys and files), then prints the plan; it loads no weights and writes nothing.
"""

from __future__ import annotations

import argparse

HELP = "run or resume a study config (tasks x strong models x methods x seeds)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML study config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config keys, e.g. limit=4 seeds=[0]")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="make the run's checks, print its cells, models and data; load no weights",
    )
    p.add_argument("--explain", action="store_true", help="list every config key with its type, default and help")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="run only every N-th cell from the I-th (0-based)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from harness.errors import require

    if args.explain:
        print(explain())
        return 0
    require(args.config, "no config given: w2s run CONFIG [KEY=VALUE ...] (see configs/ for examples)")
    from harness.study import Study

    index, count = parse_shard(args.shard)
    study = Study.load(args.config, args.overrides)
    grid = study.cells()
    cells = grid[index::count]
    require(cells, f"--shard {args.shard} selects no cells: the study has {len(grid)}; use at most {len(grid)} shards")
    if count > 1:
        from harness.preflight import check_local_output

        check_local_output(study.out, args.shard)
    from harness.commands import quiet_transformers
    from harness.runner import Runner

    quiet_transformers()
    runner = Runner(study, progress=not args.no_progress)
    if args.dry_run:
        runner.preflight(cells, dry_run=True)
        if runner.ranks.main:
            print(plan(study, cells, runner))
        return 0
    runner.run(cells)
    if runner.ranks.main:
        judged = any(study.task_judges(task) for task in {c.task for c in cells})
        after = f"w2s leaderboard {study.out}" if judged else f"w2s report {study.out}"
        print(f"{len(cells)} cells complete under {study.out}; next: {after}")
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    """ "I/N" -> (I, N) with 0 <= I < N."""
    from harness.errors import UsageError

    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


def plan(study, cells, runner) -> str:
    """What a run would do, after its checks passed: the data, models and cells, with how much of each cell is
    already on disk."""
    from harness.judging import label
    from harness.store import read_samples

    c, lines = study.config, []
    lines.append(f"study {c.study} -> {study.out}")
    for name, task in study.tasks.items():
        t = task.config
        guide = c.guides.get(t.guide) if t.guide else None
        if not any(cell.task == name for cell in cells):
            examples = "examples not checked (no cell in this shard)"
        elif name not in runner.examples:
            examples = "examples not checked (see below)"
        else:
            examples = f"{len(runner.examples[name])} examples"
        gold = f", gold {t.gold}" if t.gold else ""
        lines.append(f"task {name}: {examples} from {t.data} (limit {c.limit or 'all'}){gold}")
        if guide is not None:
            lines.append(
                f"  guide {t.guide}: tuned {study.specs[guide.tuned].path}, untuned {study.specs[guide.untuned].path}"
            )
        for strong in t.strong:
            tuned = f" (tuned directly: {t.tuned[strong]})" if strong in t.tuned else ""
            tuned += f" (base, for urial: {t.base[strong]})" if strong in t.base else ""
            lines.append(f"  strong {strong}: {study.specs[strong].path}{tuned}")
        lines.append(f"  methods ({name}): {', '.join(m.label() for m in study.task_methods[name])}")
        for judge in study.task_judges(name):
            lines.append(f"  judge {label(judge.identity)}")
    lines.append(f"seeds: {c.seeds}")
    lines.append(f"{len(cells)} cells:")
    done = 0
    for cell in cells:
        on_disk = {r["id"] for r in read_samples(cell.dir)}
        if cell.task in runner.examples:
            wanted = {e.id for e in runner.examples[cell.task]}
            have, of = len(on_disk & wanted), f"/{len(wanted)}"
        else:  # the data could not be read: what is on disk
            have, of = len(on_disk), " (of an unknown number)"
        done += have
        lines.append(f"  {cell.dir}  {have}{of} samples done")
    unmade = runner.unmade or []
    lines += [f"not checked: {note}" for note in unmade]
    passed = (
        f"{len(unmade)} check(s) could not be made (above), every other check passed"
        if unmade
        else ("every check passed")
    )
    lines.append(f"{done} samples already done; {passed}; no model weights were loaded")
    return "\n".join(lines)


def explain() -> str:
    """Every key a study config can hold, section by section."""
    from harness.configs import describe
    from harness.judges import KINDS
    from harness.study import GuideEntry, ModelEntry, StudyConfig
    from tasks import TASKS, task_class

    parts = ["# top level", *describe(StudyConfig), "", "# models.<name>", *describe(ModelEntry)]
    parts += ["", "# guides.<name>", *describe(GuideEntry)]
    for kind, cls in KINDS.items():
        parts += ["", f"# judges.<name> with kind: {kind}", *describe(cls)]
    for name in TASKS:
        parts += ["", f"# tasks.{name}", *describe(task_class(name).Config)]
    from harness.methods import CBS

    parts += [
        "",
        "# methods: plain | bon: {n} | cbs: {...} | eft: {beta} | tuned | guide",
        "#          | urial: {examples, width, successors, chunk_length}",
        "",
        "# methods: cbs",
        *describe(CBS),
    ]
    return "\n".join(parts)
