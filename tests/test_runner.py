"""The runner: every cell written, resumable at any point, never mixing settings or writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import study_dict

from harness.errors import UsageError
from harness.runner import Runner
from harness.store import MANIFEST, SAMPLES, SUMMARY, cell_lock, read_json, read_samples
from harness.study import Study


def responses(cell_dir) -> list[tuple[str, str]]:
    return [(r["id"], r["response"]) for r in read_samples(cell_dir)]


def test_a_study_writes_every_cell_then_resumes_without_redoing_work(zoo, gold_paths, data_dir, monkeypatch):
    raw = study_dict(zoo, gold_paths, data_dir)
    study = Study(raw)
    Runner(study, progress=False).run()
    for cell in study.cells():
        records = read_samples(cell.dir)
        assert len(records) == 3 and len({r["id"] for r in records}) == 3
        manifest, summary = read_json(cell.dir / MANIFEST), read_json(cell.dir / SUMMARY)
        assert manifest["cell"]["label"] == cell.method.label() and manifest["versions"]["torch"]
        assert manifest["config"]["limit"] == 3 and "device" in manifest and "git_commit" in manifest
        metrics = {"gold", "guide"} | ({"rouge1", "rouge2", "rougeL"} if cell.task == "tldr" else set())
        assert set(summary["metrics"]) == metrics and summary["n"] == 3
        assert summary["metrics"]["gold"]["mean"] == pytest.approx(sum(r["scores"]["gold"] for r in records) / 3)
        for r in records:
            assert r["compute"]["strong_tokens"] > 0 and r["finish_reason"] in ("eos", "stop", "length")
            assert r["seed"] == cell.seed and isinstance(r["request_seed"], int)
    before = {c.dir: (c.dir / SAMPLES).read_bytes() for c in study.cells()}

    def no_decoding(*args, **kwargs):
        raise AssertionError("a finished cell was decoded again")

    monkeypatch.setattr(Runner, "_decoder", no_decoding)
    Runner(Study(study_dict(zoo, gold_paths, data_dir)), progress=False).run()
    assert {c.dir: (c.dir / SAMPLES).read_bytes() for c in study.cells()} == before
    monkeypatch.undo()
    raw = study_dict(zoo, gold_paths, data_dir) | {"limit": 4}  # one more prompt: one more sample per cell
    Runner(Study(raw), progress=False).run()
    for cell in study.cells():
        assert (cell.dir / SAMPLES).read_bytes().startswith(before[cell.dir])
        assert len(read_samples(cell.dir)) == 4 and read_json(cell.dir / SUMMARY)["n"] == 4


def test_outputs_do_not_depend_on_batch_size_or_on_a_fresh_start(zoo, gold_paths, data_dir):
    def run(out, batch_size):
        raw = study_dict(zoo, gold_paths, data_dir) | {"out": str(data_dir / out), "batch_size": batch_size}
        raw["tasks"].pop("tldr")
        raw["tasks"]["imdb"]["guide"] = "g_b"  # the re-tokenising guide
        raw["methods"] = [{"cbs": {"width": 2, "successors": 2, "chunk_length": 3}}]
        study = Study(raw)
        Runner(study, progress=False).run()
        return [responses(c.dir) for c in study.cells()]

    assert run("a", 1) == run("b", 3)


def test_eft_with_a_guide_of_another_vocabulary_is_refused_before_models_load(zoo, gold_paths, data_dir, monkeypatch):
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["tasks"]["imdb"]["guide"] = "g_b"
    monkeypatch.setattr("harness.runner.ModelPool.get", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(UsageError, match="method eft needs guides that share the strong model's vocabulary"):
        Runner(Study(raw), progress=False).run()


def test_a_cell_being_written_is_refused(zoo, gold_paths, data_dir):
    study = Study(study_dict(zoo, gold_paths, data_dir))
    cell = study.cells()[0]
    with cell_lock(cell.dir), pytest.raises(UsageError, match="is being written by pid"):
        Runner(study, progress=False).run_cell(cell)


def test_resuming_under_other_settings_is_refused(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["methods"] = ["plain"]
    study = Study(raw)
    Runner(study, progress=False).run_cell(study.cells()[0])
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["methods"] = ["plain"]
    raw["tasks"]["imdb"]["sample"]["temperature"] = 0.9
    changed = Study(raw)
    with pytest.raises(UsageError, match=r"was run with other settings \(task.sample.temperature differs\)"):
        Runner(changed, progress=False).run_cell(changed.cells()[0])
    raw["tasks"]["imdb"]["sample"]["temperature"] = 0.7
    raw["guides"]["g"]["retokenize"] = True
    changed = Study(raw)
    with pytest.raises(UsageError, match=r"\(guide.retokenize differs\)"):
        Runner(changed, progress=False).run_cell(changed.cells()[0])


def test_a_torn_last_line_is_dropped_and_the_sample_redone(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["methods"] = ["plain"]
    study = Study(raw)
    cell = study.cells()[0]
    Runner(study, progress=False).run_cell(cell)
    whole = (cell.dir / SAMPLES).read_bytes()
    lines = whole.split(b"\n")
    (cell.dir / SAMPLES).write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:25])  # killed mid-write
    (cell.dir / SUMMARY).unlink()
    assert len(read_samples(cell.dir)) == 2  # readers see the finished samples only
    Runner(study, progress=False).run_cell(cell)
    redone = read_samples(cell.dir)
    assert (cell.dir / SAMPLES).read_bytes().startswith(b"\n".join(lines[:2]) + b"\n")
    for record in redone:  # the third sample is computed again, identically but for its wall time
        record["compute"].pop("seconds")
    expected = [json.loads(line) for line in lines[:3]]
    for record in expected:
        record["compute"].pop("seconds")
    assert redone == expected
    assert read_json(cell.dir / SUMMARY)["n"] == 3


def test_sigkill_mid_run_loses_nothing_and_the_rerun_completes(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir)
    raw |= {"limit": 8, "batch_size": 1, "seeds": [0]}
    raw["tasks"].pop("tldr")
    raw["methods"] = ["plain", {"cbs": {"width": 2, "successors": 2, "chunk_length": 3}}]
    config = data_dir / "study.yaml"
    config.write_text(yaml.safe_dump(raw))
    study = Study(raw)
    first = study.cells()[0].dir / SAMPLES
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(config), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if len(read_samples(first.parent)) >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = {c.dir: (c.dir / SAMPLES).read_bytes() if (c.dir / SAMPLES).exists() else b"" for c in study.cells()}
    assert 3 <= len(read_samples(first.parent)) < 16  # killed mid-way
    Runner(Study(raw), progress=False).run()
    for cell in study.cells():
        records = read_samples(cell.dir)
        assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records}) and len(records) == 8
        complete = kept[cell.dir][: kept[cell.dir].rfind(b"\n") + 1]
        assert (cell.dir / SAMPLES).read_bytes().startswith(complete)  # every sample finished before the kill kept
        assert read_json(cell.dir / SUMMARY)["n"] == 8


def test_data_with_repeated_ids_is_refused(zoo, gold_paths, data_dir):
    rows = [{"id": "same", "label": 1, "text": f"A film number {i} about things."} for i in range(3)]
    (data_dir / "imdb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    study = Study(study_dict(zoo, gold_paths, data_dir))
    with pytest.raises(UsageError, match="repeats example ids \\(same\\)"):
        Runner(study, progress=False).run_cell(study.cells()[0])
