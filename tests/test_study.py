"""Study configs: every mistake is a one-line error naming the key, found before anything loads."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import study_dict

from harness.cli import main
from harness.errors import UsageError
from harness.study import Study, apply_override


def test_a_valid_study_expands_to_its_grid(zoo, gold_paths, data_dir):
    study = Study(study_dict(zoo, gold_paths, data_dir))
    cells = study.cells()
    # imdb: 5 methods (tuned has a checkpoint) x 2 seeds; tldr: 4 methods (no tuned checkpoint) x 2 seeds
    assert len(cells) == 18
    assert {c.dir.relative_to(data_dir / "runs").parts[2] for c in cells} == {
        "plain", "bon-N2", "cbs-W2-K2-L3", "eft-beta1", "tuned",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(sedes=[0]), "unknown key sedes; known keys there: study, out"),
        (lambda d: d["tasks"]["imdb"].update(smaple={}), "unknown key tasks.imdb.smaple"),
        (
            lambda d: d["tasks"]["imdb"]["sample"].update(max_new_tokens="many"),
            "tasks.imdb.sample.max_new_tokens must be an integer",
        ),
        (lambda d: d["tasks"]["imdb"]["sample"].update(temperature=0), "tasks.imdb.sample: temperature must be > 0"),
        (lambda d: d.update(seeds="0"), "seeds must be list[int]"),
        (lambda d: d.update(limit=0), "limit must be >= 1 or null"),
        (lambda d: d["tasks"].update(gsm8k={}), "unknown task 'gsm8k'; choose one of: imdb, tldr"),
        (lambda d: d["methods"].append("beam"), "methods[5]: unknown method 'beam'"),
        (lambda d: d["methods"].append({"cbs": {"width": 0}}), "methods[5]: cbs width (W) must be an integer >= 1"),
        (lambda d: d["methods"].append({"cbs": 4}), "methods[5].cbs must map parameter names to values"),
        (lambda d: d["methods"].append("plain"), "methods lists the same method twice"),
        (lambda d: d["tasks"]["imdb"].update(strong=["nope"]), "tasks.imdb.strong[0] names model 'nope'"),
        (lambda d: d["guides"]["g"].update(tuned="nope"), "guides.g.tuned names model 'nope'"),
        (lambda d: d["tasks"]["imdb"].pop("guide"), "method bon(N=2) needs a guide but tasks.imdb has none"),
        (lambda d: d["tasks"]["imdb"].update(guide="other"), "tasks.imdb.guide names 'other', which `guides` lacks"),
        (
            lambda d: d["tasks"]["imdb"].update(data="/no/such.jsonl"),
            "tasks.imdb.data file '/no/such.jsonl' does not exist",
        ),
        (
            lambda d: d["models"].update(strong="/no/such/model"),
            "models.strong.path: directory '/no/such/model' does not exist",
        ),
        (lambda d: d["models"].update(strong={"path": "x", "dtype": "fp8"}), "models.strong: unknown dtype 'fp8'"),
        (lambda d: d["tasks"]["imdb"].update(template="Review:"), "tasks.imdb.template has no {prompt} placeholder"),
        (lambda d: d["tasks"]["imdb"].pop("tuned"), "method 'tuned' needs tasks.<task>.tuned"),
        (lambda d: d["tasks"]["imdb"].update(prefix_words=[5, 2]), "prefix_words must be [lo, hi] with 1 <= lo <= hi"),
        (lambda d: d.pop("study"), "study is required"),
        (lambda d: d["models"].update({"org/model": "x"}), "model name 'org/model' must be letters, digits"),
    ],
)
def test_config_mistakes_are_named(zoo, gold_paths, data_dir, change, message):
    raw = study_dict(zoo, gold_paths, data_dir)
    change(raw)
    with pytest.raises(UsageError) as err:
        Study(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_overrides_set_nested_keys_and_list_items():
    raw = {"limit": 5, "tasks": {"imdb": {"sample": {}}}, "methods": ["plain", {"cbs": {"width": 4}}]}
    for item in ["limit=2", "tasks.imdb.sample.max_new_tokens=7", "seeds=[0, 1]", "methods.1.cbs.width=2", "out=null"]:
        apply_override(raw, item)
    assert raw["limit"] == 2 and raw["seeds"] == [0, 1] and raw["out"] is None
    assert raw["tasks"]["imdb"]["sample"]["max_new_tokens"] == 7 and raw["methods"][1]["cbs"]["width"] == 2
    with pytest.raises(UsageError, match=r"must look like key\.path=value"):
        apply_override(raw, "limit")
    with pytest.raises(UsageError, match="no item 5"):
        apply_override(raw, "methods.5=plain")


def test_config_files_that_cannot_be_read(tmp_path, capsys):
    for path, content, message in [
        (tmp_path / "missing.yaml", None, "config file '.*missing.yaml' not found"),
        (tmp_path / "broken.yaml", "study: [unclosed", "cannot read config"),
        (tmp_path / "list.yaml", "- a\n- b\n", "must be a YAML mapping"),
    ]:
        if content is not None:
            path.write_text(content)
        assert main(["run", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err)
    (tmp_path / "unreadable.yaml").write_bytes(b"\xff\xfe\x00study")
    assert main(["run", str(tmp_path / "unreadable.yaml")]) == 2


def test_dry_run_prints_the_plan_and_loads_no_weights(zoo, gold_paths, data_dir, capsys, monkeypatch):
    path = data_dir / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(zoo, gold_paths, data_dir)))
    monkeypatch.setattr("harness.backends.hf.from_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    assert main(["run", str(path), "--dry-run", "limit=2"]) == 0
    out = capsys.readouterr().out
    assert "18 cells:" in out and "2 examples from" in out and "(limit 2)" in out and "0/2 samples done" in out
    assert not (data_dir / "runs").exists()


def test_explain_lists_every_key_with_its_help(capsys):
    assert main(["run", "--explain"]) == 0
    text = capsys.readouterr().out
    for key in ("limit:", "tasks.imdb", "prefix_words:", "sample.max_new_tokens:", "gold_text_pair:", "models.<name>"):
        assert key in text
    budgets = [line for line in text.splitlines() if line.startswith("sample.max_new_tokens:")]
    assert [b.split("default ")[1].split(".")[0] for b in budgets] == ["50", "53", "2048"]  # each task's own


def test_shards_split_the_grid_between_processes(zoo, gold_paths, data_dir, capsys):
    path = data_dir / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(zoo, gold_paths, data_dir)))
    listed = []
    for shard in ("0/3", "1/3", "2/3"):
        assert main(["run", str(path), "--dry-run", "--shard", shard]) == 0
        listed += [line.split()[0] for line in capsys.readouterr().out.splitlines() if "samples done" in line]
    assert sorted(listed) == sorted(str(c.dir) for c in Study(study_dict(zoo, gold_paths, data_dir)).cells())
    assert main(["run", str(path), "--shard", "3/3"]) == 2
    assert "needs 0 <= I < N" in capsys.readouterr().err
