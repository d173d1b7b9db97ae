"""The alpacaeval task and what its studies need: the eval set in canonical order with its references, a chat
template per model (the tokenizer's, or one from the config), task labels with their own methods, and the guide
sampled alone."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import shared, w2s

from harness.backends.hf import HFModel
from harness.configs import build
from harness.errors import UsageError
from harness.runner import Runner
from harness.study import Study
from harness.types import Template
from tasks import task_class
from tasks.alpacaeval import AlpacaEvalConfig


def make_task(**options):
    cls = task_class("alpacaeval")
    return cls(build(cls.Config, {"strong": ["s"], **options}, "tasks.alpacaeval"))


def test_the_eval_set_in_canonical_order_with_its_references():
    path = shared("alpaca_eval", "alpaca_eval_gpt4_baseline.json")
    rows = json.loads(path.read_text())
    examples = make_task(data=str(path)).examples()
    assert len(examples) == 805 and [e.id for e in examples] == [str(i) for i in range(805)]
    for e, row in zip(examples, rows, strict=True):
        assert (e.prompt, e.reference, e.meta["dataset"]) == (row["instruction"], row["output"], row["dataset"])
    assert [e.prompt for e in make_task(data=str(path)).examples(3)] == [r["instruction"] for r in rows[:3]]
    sample = AlpacaEvalConfig().sample  # the paper's settings
    assert (sample.max_new_tokens, sample.temperature, sample.top_p) == (2048, 0.7, 1.0)


def test_model_outputs_are_alpaca_evals_format_in_canonical_order(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"ref {i}", "generator": "ref", "dataset": "d"} for i in range(4)]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    task = make_task(data=str(tmp_path / "eval.json"))
    examples = task.examples(3)
    out = task.model_outputs(examples, {"2": "c", "0": "a", "1": "b"}, "m")
    assert out == [{"instruction": f"q{i}", "output": "abc"[i], "generator": "m", "dataset": "d"} for i in range(3)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "must be a non-empty JSON list of objects"),
        ('[{"instruction": "x"}]', "lacks the field(s) output, generator, dataset"),
        ("{", "is not readable JSON"),
    ],
)
def test_bad_eval_set_files_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "eval.json").write_text(content)
    with pytest.raises(UsageError) as err:
        make_task(data=str(tmp_path / "eval.json")).examples()
    assert message in str(err.value)


def test_an_unreachable_hub_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError, match=r"cannot fetch alpaca_eval_gpt4_baseline\.json from hub dataset"):
        make_task().examples(2)


def chat_study(chat_paths, tmp_path, **changes) -> dict:
    rows = [{"instruction": f"Say {w}.", "output": f"{w}!", "generator": "ref", "dataset": "d"} for w in "abcd"]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    raw = {
        "study": "chat",
        "out": str(tmp_path / "runs"),
        "limit": 2,
        "device": "cpu",
        "dtype": "float32",
        "models": {name: {"path": str(chat_paths[name]), "chat": True} for name in ("strong", "tuned", "untuned")},
        "guides": {"g": {"tuned": "tuned", "untuned": "untuned"}},
        "tasks": {
            "ae": {
                "task": "alpacaeval",
                "data": str(tmp_path / "eval.json"),
                "strong": ["strong"],
                "guide": "g",
                "methods": ["plain", {"cbs": {"width": 2, "successors": 2, "chunk_length": 3}}, "guide"],
                "sample": {"max_new_tokens": 4},
            }
        },
        "methods": ["plain"],
    }
    return raw | changes


def test_task_labels_with_their_own_methods_and_the_guide_alone(chat_paths, tmp_path):
    raw = chat_study(chat_paths, tmp_path)
    raw["tasks"]["other"] = dict(raw["tasks"]["ae"], methods=None)  # the study's methods
    study = Study(raw)
    cells = [(c.task, c.strong, c.method.label()) for c in study.cells()]
    assert cells == [
        ("ae", "strong", "plain"),
        ("ae", "strong", "cbs(W=2,K=2,L=3)"),
        ("ae", "tuned", "guide"),  # the guide's tuned model, once per task and seed
        ("other", "strong", "plain"),
    ]
    guide_cell = study.cells()[2]
    assert study.cell_model(guide_cell) == study.specs["tuned"]
    assert study.cell_template(guide_cell) == study.guide_template("ae")
    # what is judged and how methods are listed do not change a cell's samples
    changed = chat_study(chat_paths, tmp_path)
    changed["tasks"]["ae"]["methods"].append({"bon": {"n": 2}})
    changed["tasks"]["ae"]["judges"] = []
    assert Study(changed).identity(Study(changed).cells()[0]) == study.identity(study.cells()[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["tasks"]["ae"].update(task="gsm8k"), "unknown task 'gsm8k'"),
        (lambda d: d["tasks"].update(ae2={"strong": ["strong"]}), "or set tasks.ae2.task to one of them"),
        (lambda d: d["tasks"]["ae"]["methods"].append("beam"), "tasks.ae.methods[3]: unknown method 'beam'"),
        (lambda d: d["tasks"]["ae"]["methods"].append("plain"), "tasks.ae.methods lists the same method twice"),
        (lambda d: d["tasks"]["ae"].pop("guide"), "method cbs(W=2,K=2,L=3) needs a guide but tasks.ae has none"),
        (lambda d: d["tasks"].update({"a/b": {}}), "task name 'a/b' must be letters"),
        (
            lambda d: d["models"]["strong"].update(chat_template="templates/missing.jinja"),
            "models.strong.chat_template: 'templates/missing.jinja' is neither Jinja text nor an existing file",
        ),
    ],
)
def test_config_mistakes_of_these_features_are_named(chat_paths, tmp_path, change, message):
    raw = chat_study(chat_paths, tmp_path)
    change(raw)
    with pytest.raises(UsageError) as err:
        Study(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_model_config_overrides_the_tokenizers_chat_template(chat_paths, tmp_path):
    inline = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}[assistant]"
    (tmp_path / "t.jinja").write_text(
        "{% for m in messages %}<<{{ m.role }}>> {{ m.content }} {% endfor %}<<assistant>>"
    )
    raw = chat_study(chat_paths, tmp_path)
    raw["models"]["strong"]["chat_template"] = inline
    raw["models"]["tuned"]["chat_template"] = str(tmp_path / "t.jinja")
    study = Study(raw)
    strong, tuned = (HFModel.load(study.specs[n]) for n in ("strong", "tuned"))
    assert Template(chat=True).render(strong.tokenizer, "hi") == "[user] hi [assistant]"
    assert Template(chat=True).render(tuned.tokenizer, "hi") == "<<user>> hi <<assistant>>"
    untuned = HFModel.load(study.specs["untuned"])  # no override: the tokenizer's own
    assert Template(chat=True).render(untuned.tokenizer, "hi") == "<|user|>\nhi<|endoftext|>\n<|assistant|>\n"
    assert study.identity(study.cells()[0])["strong"]["chat_template"] == inline  # part of what samples depend on


def test_a_chat_model_without_a_chat_template_is_refused_before_any_model_loads(chat_paths, tmp_path, monkeypatch):
    raw = chat_study(chat_paths, tmp_path)
    raw["models"]["strong"]["path"] = str(chat_paths["no-template"])
    monkeypatch.setattr("harness.runner.ModelPool.get", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(UsageError) as err:
        Runner(Study(raw), progress=False).run()
    assert "model strong" in str(err.value) and "has no chat template; give one with models.strong.chat_template" in (
        str(err.value)
    )


def test_dry_run_lists_the_cells_of_each_task_label(chat_paths, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(chat_study(chat_paths, tmp_path)))
    code, out, err = w2s(capsys, "run", str(path), "--dry-run")
    assert code == 0, err
    assert "3 cells:" in out and "runs/ae/tuned/guide/seed-0" in out and "methods (ae): plain, cbs(W=2,K=2,L=3)" in out
