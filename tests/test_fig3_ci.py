"""Scores guarded in CI: the reduced miniature of Figure 3 (configs/fig3-ci.yaml) is built from scratch and run in a
temporary directory by the real commands, and `w2s regress` checks its scores against the committed baseline
(tests/baselines/fig3-ci.json); the same check fails when CBS is scored like plain sampling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "configs/fig3-ci.yaml"
BASELINE = "tests/baselines/fig3-ci.json"
CBS, PLAIN = "strong/cbs-W4-K4-L4/seed-0", "strong/plain/seed-0"
# one CPU thread, as `make ci-baseline` runs it: a thread count changes float rounding, so sampled tokens, preference
# pairs and the tuned guides (README, "Scores guarded in CI")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
REFRESH = (
    f"The CI miniature's scores moved away from {BASELINE} (the lines above say which and by which rule). Scores "
    f"follow everything a run uses: {RECIPE}, the training/ package (any change to it rebuilds every model), the "
    "engine, the tasks and the gold and guide scoring. If the change is intended, refresh the baseline with "
    f"`make ci-baseline` (w2s reproduce {RECIPE} on one thread, then w2s regress ... --baseline {BASELINE} --update), "
    "read its diff and commit it with the change; if not, the change broke what these scores measure."
)


def w2s(*args: str) -> subprocess.CompletedProcess:
    """A real `w2s` process on one thread in the project root (the recipe names the shipped data by relative path)."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        env=os.environ | ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The CI miniature built and run from scratch: its models and its study in a fresh temporary directory."""
    tmp = tmp_path_factory.mktemp("fig3-ci")
    done = w2s("reproduce", RECIPE, "--zoo", str(tmp / "zoo"), "--out", str(tmp / "runs"))
    assert done.returncode == 0, f"w2s reproduce {RECIPE} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return tmp / "runs"


def regress(runs: Path) -> subprocess.CompletedProcess:
    return w2s("regress", str(runs), "--baseline", BASELINE, "--two-sided")


def test_the_ci_miniatures_scores_match_the_committed_baseline(runs):
    check = regress(runs)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}\n{REFRESH}"
    assert check.stdout.startswith("OK: no regression in"), check.stdout
    assert "not in the baseline" not in check.stdout, f"{check.stdout}\n{REFRESH}"  # every score is guarded


def test_cbs_scored_like_plain_sampling_fails_the_check(runs, tmp_path):
    broken = shutil.copytree(runs, tmp_path / "runs", ignore=shutil.ignore_patterns("report"))
    for task in ("imdb", "tldr"):
        plain = json.loads((broken / task / PLAIN / "summary.json").read_text())["metrics"]
        cbs = json.loads((broken / task / CBS / "summary.json").read_text())
        cbs["metrics"] = plain
        (broken / task / CBS / "summary.json").write_text(json.dumps(cbs))
    check = regress(broken)
    weak = "CBS scored as plain sampling should fail the check; where it does not, the CI miniature's CBS gold gap is"
    weak += " within its rule and the check cannot see CBS break (README, 'Scores guarded in CI')"
    assert check.returncode == 1, f"{check.stdout}\n{weak}"
    failed = {line.split(":")[0] for line in check.stdout.splitlines() if line.startswith(("REGRESSED", "CHANGED"))}
    assert {f"REGRESSED imdb/{CBS} gold", f"REGRESSED tldr/{CBS} gold"} <= failed, f"{check.stdout}\n{weak}"
    assert all(CBS in line for line in failed), failed  # and no other cell
    assert "refresh the baseline" in check.stdout and f"--baseline {BASELINE} --update" in check.stdout
