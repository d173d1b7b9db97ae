"""A cell's identity is honest: local models and data by content, gold by device and dtype, the harness by version."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest
from conftest import study_dict

import harness.identity
from harness.errors import UsageError
from harness.identity import CHANGES, IDENTITY_VERSION, fingerprint
from harness.runner import Runner
from harness.store import MANIFEST, SUMMARY, SampleLog, read_json, read_samples, write_json
from harness.study import Study
from harness.toy import build_gpt2
from reports.load import load_study


def plain_study(zoo, gold_paths, data_dir, strong: str | None = None, **changes) -> Study:
    """One task (imdb), one method (plain), one seed; `strong` replaces the strong model's path."""
    raw = study_dict(zoo, gold_paths, data_dir) | {"seeds": [0], "methods": ["plain"]}
    raw["tasks"].pop("tldr")
    raw["tasks"]["imdb"] |= changes
    if strong is not None:
        raw["models"]["strong"] = strong
    return Study(raw)


def test_a_model_rebuilt_in_place_is_detected_on_resume(zoo, gold_paths, data_dir):
    local = shutil.copytree(zoo.paths["strong_ending"], data_dir / "strong")
    study = plain_study(zoo, gold_paths, data_dir, strong=str(local))
    cell = study.cells()[0]
    Runner(study, progress=False).run_cell(cell)
    Runner(study, progress=False).run_cell(cell)  # unchanged: resumes
    build_gpt2(zoo.strong.tokenizer, 2, 64, seed=99, eos_logit=1.0).save_pretrained(local)  # same path, new weights
    with pytest.raises(UsageError, match=r"\(strong.fingerprint differs: the files at that path have changed\)"):
        Runner(study, progress=False).run_cell(cell)


def test_a_changed_data_file_is_detected_on_resume(zoo, gold_paths, data_dir):
    study = plain_study(zoo, gold_paths, data_dir)
    Runner(study, progress=False).run_cell(study.cells()[0])
    with open(data_dir / "imdb.jsonl", "a") as f:
        f.write(json.dumps({"id": "new", "label": 1, "text": "One more review."}) + "\n")
    with pytest.raises(UsageError, match=r"\(data differs"):
        Runner(study, progress=False).run_cell(study.cells()[0])


def test_gold_runs_in_float32_unless_configured_and_its_dtype_and_device_are_part_of_the_identity(
    zoo, gold_paths, data_dir
):
    study = plain_study(zoo, gold_paths, data_dir)
    study.config.dtype = "bfloat16"  # the study's dtype is the strong models', not the gold model's
    gold = study.gold_scorer("imdb")
    assert gold.spec.dtype == "float32" and "|float32|cpu|" in gold.identity
    Runner(study, progress=False).run_cell(study.cells()[0])
    assert str(gold._model[0].dtype) == "torch.float32"
    halved = plain_study(zoo, gold_paths, data_dir, gold_dtype="bfloat16")
    assert "|bfloat16|cpu|" in halved.gold_scorer("imdb").identity
    with pytest.raises(UsageError, match=r"\(gold differs\)"):
        Runner(halved, progress=False).run_cell(halved.cells()[0])


def test_a_cell_from_another_identity_version_gets_a_one_line_message(zoo, gold_paths, data_dir):
    study = plain_study(zoo, gold_paths, data_dir)
    cell = study.cells()[0]
    Runner(study, progress=False).run_cell(cell)
    manifest = read_json(cell.dir / MANIFEST)
    assert manifest["identity_version"] == IDENTITY_VERSION
    manifest.pop("identity_version")  # as written before versions were recorded
    write_json(cell.dir / MANIFEST, manifest)
    with pytest.raises(UsageError) as err:
        Runner(study, progress=False).run_cell(cell)
    message = str(err.value)
    assert f"was made by identity version 1; this harness writes version {IDENTITY_VERSION}" in message
    assert CHANGES[IDENTITY_VERSION] in message and "delete that cell" in message and "\n" not in message
    write_json(cell.dir / MANIFEST, manifest | {"identity_version": IDENTITY_VERSION + 1})
    with pytest.raises(UsageError, match="was made by a newer harness"):
        Runner(study, progress=False).run_cell(cell)


def test_every_identity_version_says_what_changed():
    assert sorted(CHANGES) == list(range(1, IDENTITY_VERSION + 1)) and all(CHANGES.values())


def test_file_digests_are_cached_but_never_stale(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"a" * 1000)
    (model / "config.json").write_text("{}")
    (model / ".lock").write_text("ignored")
    reads = []
    real = hashlib.file_digest
    monkeypatch.setattr(
        harness.identity.hashlib, "file_digest", lambda f, name: (reads.append(f.name), real(f, name))[1]
    )
    first = fingerprint(str(model))
    assert len(reads) == 2 and fingerprint(str(model)) == first and len(reads) == 2  # the second time: cached
    assert fingerprint("gpt2-large") is None  # a hub id
    weights = model / "weights.bin"
    stat = weights.stat()
    time.sleep(0.05)  # inode timestamps tick coarsely; a rewrite must land on a later ctime
    weights.write_bytes(b"b" * 1000)  # same size...
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the old mtime
    assert fingerprint(str(model)) != first


def test_reports_count_the_samples_the_summary_counts(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir) | {"seeds": [0], "methods": ["plain"], "limit": 4}
    raw["tasks"].pop("tldr")
    Runner(Study(raw), progress=False).run()
    study = Study(raw | {"limit": 3})  # a lower limit: the log holds a sample the plan no longer has
    Runner(study, progress=False).run()
    cell = study.cells()[0]
    assert len(read_samples(cell.dir)) == 4 and read_json(cell.dir / SUMMARY)["n"] == 3
    SampleLog(cell.dir).append([read_samples(cell.dir)[-1] | {"id": "from-a-partial-run"}])
    loaded = load_study(study.out).cells[0]
    assert len(loaded.samples) == loaded.summary["n"] == 3
