"""A short summary of a study in words: per task and strong model, the methods ordered by gold reward, and whether
weak-to-strong search (CBS) beats base sampling with a paired 95% CI above zero, as the paper's Figure 3 claims."""

from __future__ import annotations

from reports.load import Study, pooled
from reports.table import BASE, fmt_diff, fmt_stat, paired_gold

SEARCH = "cbs"
GUIDE = "guide"


def _ordering(study: Study, task: str, strong: str) -> str:
    """Method labels by pooled gold mean, best first: "cbs(W=4,K=4,L=5) 3.10 > bon(n=16) 2.00 > ..."."""
    means = []
    for label in study.labels(task):
        stat = pooled(study.group(task, strong, label), "gold")
        if stat["mean"] is not None:
            means.append((stat["mean"], label))
    return " > ".join(f"{label} {mean:.2f}" for mean, label in sorted(means, reverse=True))


def render_summary(study: Study) -> str:
    """summary.md: per task, the ordering of methods per strong model and the CBS-vs-plain verdict."""
    lines = [f"# Summary: {study.root.name}", ""]
    for task in study.tasks():
        lines += [f"## {task}", ""]
        wins, compared = 0, 0
        for strong in study.strong_models(task):
            lines.append(f"- {strong}: {_ordering(study, task, strong)}")
            base = study.group(task, strong, BASE)
            for label in (lb for lb in study.labels(task) if study.family(lb) == SEARCH):
                diff = paired_gold(study.group(task, strong, label), base) if base else None
                if diff is None or diff["mean_diff"] is None:
                    continue
                compared += 1
                wins += diff["ci_low"] > 0
                text, p = fmt_diff(diff)
                lines.append(f"  - {label} − {BASE}: {text} (paired 95% CI, p = {p}, {diff['n']} prompts)")
        guide = [c for c in study.cells if c.task == task and c.method == GUIDE]
        if guide:
            lines.append(f"- the tuned guide alone ({guide[0].strong}): {fmt_stat(pooled(guide, 'gold'))}")
        if compared:
            verdict = "all" if wins == compared else f"{wins} of"
            lines += [
                "",
                f"CBS beats {BASE} sampling with a paired 95% CI above zero in {verdict} {compared} comparison(s) "
                "(each strong model with each search setting).",
            ]
        lines.append("")
    return "\n".join(lines)
