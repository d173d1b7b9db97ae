"""The paper's Figure 4 preset: its grid, and a dry run that prints the plan offline, saying which checks needed the
unreachable hub; a real run refuses in one line. Also how an unreachable hub is detected."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from conftest import study_dict, w2s

from harness import hub
from harness.study import Study

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "paper-fig4.yaml"
STRONG = ["llama-2-7b-chat", "llama-2-70b-chat", "llama-3-8b-instruct", "llama-3-70b-instruct"]
GUIDED = ["bon(N=4)", "bon(N=8)", "cbs(W=2,K=2,L=30,branch_finished)", "urial+cbs(W=2,K=2,L=30)", "guide"]


@pytest.fixture
def offline(monkeypatch):
    """The hub unreachable, as on a machine without internet: hub ids resolve from the local cache only. The judge's
    key variable is set, as the dry run checks it (no request is sent)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("OPENAI_API_KEY", "unused")


def test_the_preset_holds_the_papers_settings():
    study = Study.load(CONFIG)
    guides = {name: (g.tuned, g.untuned) for name, g in study.config.guides.items()}
    assert guides == {
        "zephyr": ("zephyr-7b-beta", "mistral-7b-sft-beta"),
        "tulu": ("tulu-2-dpo-7b", "tulu-2-7b"),
        "starling": ("starling-lm-7b-alpha", "openchat-3.5"),
    }
    paths = {name: spec.path for name, spec in study.specs.items()}
    assert paths["llama-3-70b-instruct"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert paths["starling-lm-7b-alpha"] == "berkeley-nest/Starling-LM-7B-alpha"
    for name, task in study.tasks.items():
        assert task.name == "alpacaeval" and task.config.sample.max_new_tokens == 2048
        assert [j.identity["comparable_to_leaderboard"] for j in study.task_judges(name)] == [True]
        labels = [m.label() for m in study.task_methods[name]]
        if name == "alpacaeval":
            assert labels == ["plain", "urial"] and task.config.guide is None
        elif name == "tulu-eft":  # only the Llama-2 models share Tulu 2's vocabulary
            assert labels == ["eft(beta=1)"] and task.config.strong == STRONG[:2]
        else:
            assert labels == GUIDED and task.config.guide == name and task.config.strong == STRONG
    cells = study.cells()
    assert len(cells) == 4 * 2 + 3 * (4 * 4 + 1) + 2
    urial = next(c for c in cells if c.method.name == "urial" and c.strong == "llama-2-70b-chat")
    assert study.cell_model(urial).path == "meta-llama/Llama-2-70b-hf"
    assert study.cell_model(urial).device_map == "auto"  # placed like the chat model it stands beside


def test_dry_run_prints_the_plan_offline_and_names_the_checks_it_could_not_make(offline, capsys, tmp_path):
    start = time.perf_counter()
    code, out, err = w2s(capsys, "run", str(CONFIG), f"out={tmp_path / 'runs'}", "--dry-run")
    assert code == 0, err
    assert time.perf_counter() - start < 60  # no retries against the unreachable hub
    assert "61 cells:" in out and "no model weights were loaded" in out
    assert "guide tulu: tuned allenai/tulu-2-dpo-7b, untuned allenai/tulu-2-7b" in out
    assert "(base, for urial: meta-llama/Meta-Llama-3-8B)" in out
    assert "judge gpt4-turbo (gpt-4-1106-preview)" in out and "not comparable" not in out
    assert (
        "methods (starling): bon(N=4), bon(N=8), cbs(W=2,K=2,L=30,branch_finished), urial+cbs(W=2,K=2,L=30), guide"
        in out
    )
    notes = [line for line in out.splitlines() if line.startswith("not checked: ")]
    if notes:  # what this machine's cache lacks: each source named once
        assert len(notes) == len(set(notes)) and f"{len(notes)} check(s) could not be made" in out
        assert all("is not in the local cache and the hub cannot be reached" in n for n in notes)
    assert not (tmp_path / "runs").exists()


def test_a_real_run_refuses_a_model_it_cannot_reach_in_one_line(offline, capsys, zoo, gold_paths, data_dir):
    """What a dry run notes, a real run refuses, at once, before anything is written."""
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["models"]["strong"] = "no-such-org/no-such-model"
    config = data_dir / "hub.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, out, err = w2s(capsys, "run", str(config), "--dry-run")
    assert code == 0, err
    assert "not checked: model no-such-org/no-such-model is not in the local cache" in out
    code, out, err = w2s(capsys, "run", str(config), "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert "model 'no-such-org/no-such-model': it is not in the local Hugging Face cache" in err
    assert not (data_dir / "runs").exists()


def test_an_unreachable_hub_switches_to_the_local_cache(monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    hub.reachable.cache_clear()
    try:
        assert not hub.reachable()
        assert hub.offline()
        from huggingface_hub import constants

        assert constants.HF_HUB_OFFLINE
    finally:
        hub.reachable.cache_clear()
