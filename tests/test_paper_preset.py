"""The paper preset (configs/fig3-paper.yaml): its dry run prints the paper's plan, every model, dataset, training
step and cell, offline and without loading anything; every training step is a command `w2s` accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import w2s

from harness.cli import build_parser

# the recipe runner (`w2s reproduce`) comes with the miniature's pipeline; without it there is nothing to plan with
load_recipe = pytest.importorskip(
    "training.recipe", reason="w2s reproduce (training/recipe.py) is not here"
).load_recipe

PAPER = Path(__file__).resolve().parents[1] / "configs" / "fig3-paper.yaml"
HUB = [
    "lvwerra/gpt2-imdb", "ZHZisZZ/imdb_preference", "lvwerra/distilbert-imdb", "openai-community/gpt2",
    "openai-community/gpt2-large", "openai-community/gpt2-xl", "meta-llama/Llama-2-7b-hf",
    "meta-llama/Meta-Llama-3-8B", "trl-lib/tldr", "trl-lib/tldr-preference",
    "OpenAssistant/reward-model-deberta-v3-large-v2",
]  # fmt: skip


def refuse(*args, **kwargs):
    raise AssertionError("the dry run loaded something")


@pytest.fixture
def offline(monkeypatch):
    """No hub, no weights, no tokenizers, no datasets: any attempt fails the test."""
    import datasets
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for auto in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", refuse)
    monkeypatch.setattr(datasets, "load_dataset", refuse)


def test_the_dry_run_prints_every_model_dataset_step_and_cell(offline, tmp_path, capsys):
    code, out, err = w2s(capsys, "reproduce", str(PAPER), "--dry-run", "--zoo", str(tmp_path / "zoo"))
    assert code == 0, err
    for hub_id in HUB:
        assert hub_id in out, hub_id
    steps = re.findall(r"step \d+ (\S+) \[to build\]", out)
    assert steps == [s.name for s in load_recipe(PAPER).steps] and len(steps) == 11
    cells = out.split("cells:\n")[1].splitlines()
    # per task: 2 strong models x methods x 3 seeds, plus the guide alone x 3 seeds; no EFT across vocabularies
    assert len(cells) == (2 * 5 * 3 + 3) * 2 + (2 * 4 * 3 + 3) * 2 == 120
    assert not [c for c in cells if "llama" in c and "eft" in c]
    assert not (tmp_path / "zoo").exists()  # nothing built


def test_every_step_is_a_command_w2s_accepts():
    parser = build_parser()
    for step in load_recipe(PAPER).steps:
        args = parser.parse_args(step.resolved(Path("out")))  # argparse exits on an unknown option
        assert args.command == "tune"
        assert args.lora == ("llama" in step.name), step.name  # LoRA for the 7B/8B models only
