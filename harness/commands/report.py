"""Write a study's figures (Fig. 3: gold by strong model, a panel per task; gold against compute; proxy against gold),
a markdown table of every finished cell with paired differences, and a short summary (summary.md), reading run
directories only: no model is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "figures and a markdown table from a study's finished cells"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_dir", metavar="RUNS_DIR", type=Path, help="the study's runs directory (holds <task>/...)")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: RUNS_DIR/report)")


def run(args: argparse.Namespace) -> int:
    from harness.preflight import make_output_dir
    from reports.figures import write_figures
    from reports.load import load_study
    from reports.summary import render_summary
    from reports.table import render

    study = load_study(args.runs_dir)
    out = make_output_dir(args.out or args.runs_dir / "report", "report directory", "give a writable --out DIR")
    written, notes = write_figures(study, out)
    table = out / "table.md"
    table.write_text(render(study), encoding="utf-8")
    summary = out / "summary.md"
    summary.write_text(render_summary(study), encoding="utf-8")
    for path in [*written, table, summary]:
        print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}")
    for cell in study.incomplete:
        print(f"skipped incomplete cell (no summary.json): {cell}")
    print(f"{len(study.cells)} finished cell(s) reported, {len(study.incomplete)} incomplete skipped")
    return 0
