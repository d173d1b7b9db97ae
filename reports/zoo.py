"""The table of a recipe's built models: each training step, how long it took, and what it measured: held-out
perplexity of a language model, held-out accuracy of a reward model (their metrics.json), the first and last
training loss and the reward accuracy of a tuning run (its tune.json), and the gold rewards of preference pairs."""

from __future__ import annotations

import json
from pathlib import Path


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _tune_metrics(path: Path) -> dict:
    """First and last logged loss, and the last reward accuracy and margin (DPO), from trl's log in tune.json."""
    log = json.loads(path.read_text(encoding="utf-8")).get("log_history") or []
    losses = [e["loss"] for e in log if "loss" in e]
    out = {"loss_first": losses[0], "loss_last": losses[-1]} if losses else {}
    for key in ("rewards/accuracies", "rewards/margins"):
        values = [e[key] for e in log if key in e]
        if values:
            out[key.replace("rewards/", "reward_")] = values[-1]
    return out


def _pairs_metrics(path: Path) -> dict:
    """How many pairs, how often the chosen response has the higher gold reward, and the mean gold of each side."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    scored = [r for r in rows if "score_chosen" in r and "score_rejected" in r]
    if not scored:
        return {"pairs": len(rows)}
    n = len(scored)
    return {
        "pairs": len(rows),
        "chosen_higher": sum(r["score_chosen"] > r["score_rejected"] for r in scored) / n,
        "gold_chosen": sum(r["score_chosen"] for r in scored) / n,
        "gold_rejected": sum(r["score_rejected"] for r in scored) / n,
    }


def step_metrics(record: dict, step_dir: Path) -> dict:
    """What a step measured, from the files its command wrote."""
    metrics = dict(record.get("metrics") or {})
    if (step_dir / "tune.json").is_file():
        metrics |= _tune_metrics(step_dir / "tune.json")
    for pairs in sorted(step_dir.glob("*.jsonl")):
        metrics |= _pairs_metrics(pairs)
    return metrics


def render_zoo(records: list[dict], dirs: list[Path]) -> str:
    """zoo.md from the steps' records (training.recipe.build) and their output directories."""
    lines = ["# Models built", "", "| step | seconds | measured |", "|---|---|---|"]
    for record, step_dir in zip(records, dirs, strict=True):
        metrics = step_metrics(record, step_dir)
        text = ", ".join(f"{k} {_value(v)}" for k, v in metrics.items()) or "—"
        lines.append(f"| {record['name']} | {record['seconds']:.0f} | {text} |")
    return "\n".join(lines) + "\n"


def write_zoo_table(records: list[dict], dirs: list[Path], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_zoo(records, dirs), encoding="utf-8")
    return path
