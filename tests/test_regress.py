"""`w2s regress` for users' CI: exit 0 when scores hold, 1 when one drops (naming it), 2 for unusable input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import w2s

from harness.stats import summarize
from harness.store import read_json, write_json

CELLS = ["imdb/gpt2-large/plain/seed-0", "imdb/gpt2-large/cbs-W4-K4-L5/seed-0"]


def metrics(shift: float = 0.0, seed: int = 0) -> dict:
    """A summary's metrics: gold and guide over 50 samples, gold shifted by `shift`."""
    rng = np.random.default_rng(seed)
    return {
        "gold": summarize(rng.normal(1.0, 0.5, 50) + shift),
        "guide": summarize(rng.normal(2.0, 0.5, 50)),
    }


def write_study(root: Path, shifts: dict[str, float] | None = None) -> Path:
    """summary.json for every cell in CELLS, gold shifted per cell."""
    for i, cell in enumerate(CELLS):
        summary = {"cell": {"slug": cell}, "n": 50, "metrics": metrics((shifts or {}).get(cell, 0.0), seed=i)}
        write_json(root / cell / "summary.json", summary)
    return root


@pytest.fixture
def baseline(tmp_path, capsys) -> tuple[Path, Path]:
    """A study and a baseline made from it by --update."""
    root, file = write_study(tmp_path / "runs"), tmp_path / "baseline.json"
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--update")
    assert code == 0 and f"wrote baseline {file}: 2 cell(s), 4 metric(s)" in out
    return root, file


def gold(root: Path, cell: str) -> dict:
    return read_json(root / cell / "summary.json")["metrics"]["gold"]


def test_update_writes_the_current_metrics(baseline):
    root, file = baseline
    stored = read_json(file)["cells"]
    assert sorted(stored) == sorted(CELLS)
    assert stored[CELLS[1]]["gold"] == {k: gold(root, CELLS[1])[k] for k in ("mean", "ci_low", "ci_high")}


def test_unchanged_summaries_pass(baseline, capsys):
    root, file = baseline
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file))
    assert code == 0 and out.startswith("OK: no regression in 4 metric(s) of 2 cell(s)")


def test_drop_below_the_ci_fails_and_names_the_metric(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[1])
    drop = stat["mean"] - stat["ci_low"] + 0.01  # just past the CI's lower end
    write_study(root, {CELLS[1]: -drop})
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file))
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("REGRESSED")]
    assert line.startswith(f"REGRESSED {CELLS[1]} gold: current mean {stat['mean'] - drop:.6g} < baseline CI low")
    assert "95% CI" in line and "FAILED: 1 regression(s)" in out


def test_drop_inside_the_ci_passes(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[1])
    write_study(root, {CELLS[1]: -(stat["mean"] - stat["ci_low"]) / 2})
    assert w2s(capsys, "regress", str(root), "--baseline", str(file))[0] == 0


def test_absolute_tolerance_replaces_the_ci_rule(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[0])
    beyond_ci = stat["mean"] - stat["ci_low"] + 0.05
    write_study(root, {CELLS[0]: -beyond_ci})
    tolerance = beyond_ci + 0.01  # the drop is past the CI but within the tolerance
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--tolerance", str(tolerance))[0] == 0
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--tolerance", str(beyond_ci - 0.01))
    assert code == 1
    assert f"REGRESSED {CELLS[0]} gold: current mean" in out and "absolute tolerance" in out and "--tolerance" in out


def test_tolerance_stored_in_the_baseline_wins_over_the_flag(baseline, capsys):
    root, file = baseline
    data = read_json(file)
    data["cells"][CELLS[0]]["gold"]["tolerance"] = 1.0
    write_json(file, data)
    write_study(root, {CELLS[0]: -0.5})
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--tolerance", "0.1")
    assert code == 0, out
    write_study(root, {CELLS[0]: -1.2})
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--tolerance", "5")
    assert code == 1 and "absolute tolerance 1 from baseline entry" in out


def test_ci_factor_scales_the_allowed_drop_with_the_baselines_ci(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[1])
    half = stat["mean"] - stat["ci_low"]
    write_study(root, {CELLS[1]: -2.5 * half})  # past the CI, inside 3 half-widths
    assert w2s(capsys, "regress", str(root), "--baseline", str(file))[0] == 1
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--ci-factor", "3")[0] == 0
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--ci-factor", "2")
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("REGRESSED")]
    assert line.startswith(f"REGRESSED {CELLS[1]} gold: current mean {stat['mean'] - 2.5 * half:.6g} < baseline mean")
    assert f"2 x CI half-width {half:.6g}" in line and "from --ci-factor" in line


def test_ci_factor_stored_per_entry_wins_over_the_flags(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[1])
    half = stat["mean"] - stat["ci_low"]
    data = read_json(file)
    data["cells"][CELLS[1]]["gold"]["ci_factor"] = 4.0
    write_json(file, data)
    write_study(root, {CELLS[1]: -3 * half})
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--tolerance", "0")[0] == 0
    write_study(root, {CELLS[1]: -5 * half})
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--ci-factor", "10")
    assert code == 1 and "4 x the baseline's 95% CI half-width, from baseline entry" in out


def test_two_sided_fails_a_rise_and_one_sided_lets_it_pass(baseline, capsys):
    root, file = baseline
    stat = gold(root, CELLS[0])
    rise = stat["ci_high"] - stat["mean"] + 0.01  # just past the CI's upper end
    write_study(root, {CELLS[0]: rise})
    assert w2s(capsys, "regress", str(root), "--baseline", str(file))[0] == 0
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--two-sided")
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("CHANGED")]
    assert line.startswith(f"CHANGED {CELLS[0]} gold: current mean {stat['mean'] + rise:.6g} > baseline CI high")
    assert "refresh the baseline" in out and f"--baseline {file} --update" in out
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--two-sided", "--tolerance", "1")[0] == 0


def test_update_stores_a_ci_factor_and_keeps_it(baseline, capsys):
    root, file = baseline
    file.unlink()
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--update", "--ci-factor", "3")[0] == 0
    stored = read_json(file)["cells"]
    assert {stored[c][m]["ci_factor"] for c in CELLS for m in ("gold", "guide")} == {3.0}
    data = read_json(file)
    data["cells"][CELLS[0]]["gold"] = {"mean": 9.0, "ci_low": 8.0, "ci_high": 10.0, "tolerance": 0.5}
    write_json(file, data)
    assert w2s(capsys, "regress", str(root), "--baseline", str(file), "--update", "--ci-factor", "2")[0] == 0
    stored = read_json(file)["cells"]
    assert stored[CELLS[0]]["gold"]["tolerance"] == 0.5 and "ci_factor" not in stored[CELLS[0]]["gold"]
    assert stored[CELLS[0]]["guide"]["ci_factor"] == 3.0


def test_missing_metric_and_missing_cell_fail(baseline, capsys):
    root, file = baseline
    summary = read_json(root / CELLS[0] / "summary.json")
    del summary["metrics"]["guide"]
    write_json(root / CELLS[0] / "summary.json", summary)
    (root / CELLS[1] / "summary.json").unlink()
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file))
    assert code == 1
    assert f"REGRESSED {CELLS[0]} guide: metric missing from the current summary" in out
    assert f"REGRESSED {CELLS[1]} (all metrics): cell missing from the current summaries" in out


def test_new_metrics_are_reported_as_unchecked(baseline, capsys):
    root, file = baseline
    summary = read_json(root / CELLS[0] / "summary.json")
    summary["metrics"]["rouge1"] = summarize([0.3, 0.4])
    write_json(root / CELLS[0] / "summary.json", summary)
    code, out, _ = w2s(capsys, "regress", str(root), "--baseline", str(file))
    assert code == 0 and f"not checked (add them with --update): {CELLS[0]} rouge1" in out


def test_update_keeps_stored_tolerances_and_then_passes(baseline, capsys):
    root, file = baseline
    data = read_json(file)
    data["cells"][CELLS[0]]["gold"]["tolerance"] = 0.3
    write_json(file, data)
    write_study(root, {CELLS[0]: -2.0})
    code, _, _ = w2s(capsys, "regress", str(root), "--baseline", str(file), "--update", "--tolerance", "0.05")
    assert code == 0
    stored = read_json(file)["cells"]
    assert stored[CELLS[0]]["gold"]["tolerance"] == 0.3
    assert stored[CELLS[0]]["gold"]["mean"] == pytest.approx(gold(root, CELLS[0])["mean"])
    assert stored[CELLS[0]]["guide"]["tolerance"] == 0.05 and stored[CELLS[1]]["gold"]["tolerance"] == 0.05
    assert w2s(capsys, "regress", str(root), "--baseline", str(file))[0] == 0


def test_a_single_summary_file_is_keyed_dot(tmp_path, capsys):
    file, base = tmp_path / "summary.json", tmp_path / "baseline.json"
    write_json(file, {"n": 50, "metrics": metrics()})
    assert w2s(capsys, "regress", str(file), "--baseline", str(base), "--update")[0] == 0
    assert list(read_json(base)["cells"]) == ["."]
    write_json(file, {"n": 50, "metrics": metrics(shift=-1.0)})
    code, out, _ = w2s(capsys, "regress", str(file), "--baseline", str(base))
    assert code == 1 and "REGRESSED . gold:" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not readable JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"metrics": {}}', 'has no "cells" object'),
        (
            json.dumps({"cells": {"a": {"gold": {"mean": "high", "ci_low": 0, "ci_high": 1}}}}),
            "needs a number for mean",
        ),
        (json.dumps({"cells": {"a": {"gold": {"mean": 1, "ci_low": 0}}}}), "needs a number for ci_high"),
        (json.dumps({"cells": {"a": {"gold": {"mean": 1, "ci_low": 0, "ci_high": 2, "tolerance": -1}}}}), "tolerance"),
        (json.dumps({"cells": {"a": [1]}}), "must map metrics to entries"),
        (json.dumps({"cells": {"a": {"gold": {"mean": 1, "ci_low": 0, "ci_high": 2, "ci_factor": "x"}}}}), "ci_factor"),
        (
            json.dumps(
                {"cells": {"a": {"gold": {"mean": 1, "ci_low": 0, "ci_high": 2, "ci_factor": 2, "tolerance": 1}}}}
            ),
            "has both tolerance and ci_factor",
        ),
    ],
)
def test_malformed_baseline_exits_2_with_one_line(tmp_path, capsys, content, message):
    root = write_study(tmp_path / "runs")
    file = tmp_path / "baseline.json"
    file.write_text(content)
    code, out, err = w2s(capsys, "regress", str(root), "--baseline", str(file))
    assert code == 2 and err.count("\n") == 1 and message in err and str(file) in err and out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--baseline", "{base}"], "does not exist; pass a summary.json"),
        (["{empty}", "--baseline", "{base}"], "no summary.json under"),
        (["{runs}", "--baseline", "{missing}"], "does not exist; create it with --update"),
        (["{runs}", "--baseline", "{base}", "--tolerance", "-0.1"], "--tolerance must be a number >= 0"),
        (["{runs}", "--baseline", "{base}", "--ci-factor", "nan"], "--ci-factor must be a number >= 0"),
        (["{runs}", "--baseline", "{base}", "--ci-factor", "2", "--tolerance", "1"], "not both"),
        (["{bad}", "--baseline", "{base}"], 'has no "metrics" object'),
        (["{runs}"], "the following arguments are required: --baseline"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    runs, base = write_study(tmp_path / "runs"), tmp_path / "baseline.json"
    assert w2s(capsys, "regress", str(runs), "--baseline", str(base), "--update")[0] == 0
    (tmp_path / "empty").mkdir()
    write_json(tmp_path / "bad" / "summary.json", {"n": 3})
    paths = {"runs": runs, "base": base, "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    paths["bad"] = tmp_path / "bad" / "summary.json"
    code, out, err = w2s(capsys, "regress", *[a.format(**paths) for a in args])
    assert code == 2 and err.count("\n") == 1 and message in err and out == ""
