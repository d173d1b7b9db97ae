"""The README's offline workflow, from the command line: build the small models, run the shipped config over both
tasks, kill it mid-way, resume, report, and guard the scores with a baseline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.store import SUMMARY, find_cells, read_samples

ROOT = Path(__file__).resolve().parents[1]


def w2s(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_offline_study_runs_is_killed_resumes_reports_and_regresses(tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")  # the config's relative paths, as from the project root
    built = w2s(tmp_path, "toy-models", "toy", "--scale", "0.02")
    assert built.returncode == 0, built.stderr
    run = [sys.executable, "-m", "harness.cli", "run", str(ROOT / "configs" / "offline-small.yaml"), "limit=2"]
    run += ["seeds=[0]", "--no-progress"]
    process = subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = tmp_path / "runs" / "offline-small"
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline and len(find_cells(out)) < 3:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not all((c / SUMMARY).exists() for c in find_cells(out))  # it was killed mid-way
    resumed = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    cells = find_cells(out)
    assert len(cells) == 17  # imdb: 4 methods x 2 strong models + `tuned` for strong-m only; tldr: 4 x 2
    for cell in cells:
        ids = [r["id"] for r in read_samples(cell)]
        assert len(ids) == 2 and len(set(ids)) == 2 and (cell / SUMMARY).exists()
    report = w2s(tmp_path, "report", str(out))
    assert report.returncode == 0, report.stderr
    for name in ("fig3-imdb.png", "fig3-tldr.pdf", "compute-imdb.png", "proxy-gold-tldr.png", "table.md"):
        assert (out / "report" / name).stat().st_size > 0
    baseline = tmp_path / "baseline.json"
    assert w2s(tmp_path, "regress", str(out), "--baseline", str(baseline), "--update").returncode == 0
    check = w2s(tmp_path, "regress", str(out), "--baseline", str(baseline))
    assert check.returncode == 0 and "OK" in check.stdout
