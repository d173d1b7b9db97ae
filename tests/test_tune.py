"""`w2s tune sft|dpo`: trl's trainers on a small locally built GPT-2, a few steps each. What a user relies on: the loss
falls, the saved directory loads like any model, DPO makes the guide's implicit reward prefer the chosen responses,
a killed run resumes to the same weights, LoRA saves merged weights and its adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import w2s
from transformers import TrainerCallback

from harness.backends.hf import HFModel, ModelSpec
from harness.guide import Guide
from training.data import indexed_pairs
from training.tune import CHECKPOINTS, RECORD, RunOptions, TuneSettings, losses, prepare, train

GOOD = [" good great wonderful", " really good film", " wonderful and funny", " great story"]
BAD = [" bad awful terrible", " really bad film", " awful and boring", " terrible story"]
PROMPTS = ["The film was", "I think the movie is", "This story", "She said it was", "The music", "My friend found it"]


def pairs() -> list[dict]:
    """Preference pairs whose chosen responses are positive words, in `w2s prefs`'s format."""
    return [
        {"prompt": p, "chosen": GOOD[i % 4], "rejected": BAD[(i + j) % 4]}
        for i, p in enumerate(PROMPTS)
        for j in range(2)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(path: Path) -> HFModel:
    return HFModel.load(ModelSpec(str(path), dtype="float32", device="cpu"))


def implicit_wins(tuned: HFModel, base: HFModel, rows: list[dict]) -> float:
    """Fraction of pairs whose chosen response gets the higher implicit reward log pi/pi_ref (the guide's score)."""
    guide = Guide(tuned, base)
    prompts = [r["prompt"] for r in rows]
    chosen = guide.score_text(prompts, [r["chosen"] for r in rows], [True] * len(rows))
    rejected = guide.score_text(prompts, [r["rejected"] for r in rows], [True] * len(rows))
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows)


@pytest.fixture
def base(zoo) -> Path:
    return zoo.paths["untuned"]  # a 1-layer GPT-2 over a 300-token vocabulary


def dpo_args(base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "dpo", str(base), str(data), str(out), "--lr", "5e-3", "--max-steps", "8", "--batch-size", "4",
            "--logging-steps", "1", "--device", "cpu", *extra]  # fmt: skip


def test_dpo_lowers_the_loss_and_ranks_chosen_above_rejected(base, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    code, out, err = w2s(capsys, *dpo_args(base, data, tmp_path / "dpo"))
    assert code == 0, err
    history = losses(tmp_path / "dpo")
    assert len(history) == 8 and history[-1] < history[0] * 0.7
    record = json.loads((tmp_path / "dpo" / RECORD).read_text())
    assert record["state"] == "finished" and record["saved"] == "full weights"
    assert not (tmp_path / "dpo" / CHECKPOINTS).exists()  # removed once the model is saved
    before = implicit_wins(load(base), load(base), pairs())  # an untuned guide has reward 0: it prefers nothing
    after = implicit_wins(load(tmp_path / "dpo"), load(base), pairs())
    assert before == 0 and after >= 0.9
    code, out, _ = w2s(capsys, *dpo_args(base, data, tmp_path / "dpo"))  # the same command again does nothing
    assert code == 0 and "nothing to do" in out


def test_sft_lowers_the_loss_and_saves_a_model_that_loads(base, tmp_path, capsys):
    rows = [{"text": p + GOOD[i % 4] + "."} for i, p in enumerate(PROMPTS * 2)]
    data = write_jsonl(tmp_path / "text.jsonl", rows)
    args = ["--lr", "1e-2", "--max-steps", "8", "--batch-size", "4", "--logging-steps", "1", "--device", "cpu"]
    code, _, err = w2s(capsys, "tune", "sft", str(base), str(data), str(tmp_path / "sft"), *args)
    assert code == 0, err
    history = losses(tmp_path / "sft")
    assert history[-1] < history[0] * 0.9
    tuned, untuned = load(tmp_path / "sft"), load(base)
    text = [r["text"] for r in rows]
    assert mean_logprob(tuned, text) > mean_logprob(untuned, text) + 0.5


def mean_logprob(model: HFModel, texts: list[str]) -> float:
    """Mean per-token log-likelihood of the texts under the model."""
    total, count = 0.0, 0
    for text in texts:
        ids = model.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model.model(ids).logits[0, :-1].log_softmax(-1)
        total += logits.gather(1, ids[0, 1:, None]).sum().item()
        count += ids.shape[1] - 1
    return total / count


class Interrupt(TrainerCallback):
    """Stops a run as a kill would, after `step` optimizer steps."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_last_complete_checkpoint(base, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    settings = TuneSettings("dpo", str(base), str(data), max_steps=8, lr=5e-3, batch_size=4, device="cpu")
    whole = train(prepare(settings, RunOptions(tmp_path / "whole", save_steps=3, progress=False)), log=lambda m: None)
    run = RunOptions(tmp_path / "cut", save_steps=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(prepare(settings, run), log=lambda m: None, callbacks=[Interrupt(7)])
    assert json.loads((run.out / RECORD).read_text())["state"] == "training"
    (run.out / CHECKPOINTS / "checkpoint-9").mkdir()  # a save cut short by the kill: no trainer state
    said = []
    train(prepare(settings, run), log=said.append)
    assert said[0].endswith("checkpoint-6")
    a, b = load(whole).model.state_dict(), load(run.out).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # the same weights as the run never stopped
    assert json.loads((run.out / RECORD).read_text())["state"] == "finished"


def test_lora_saves_merged_weights_and_the_adapter(base, tmp_path, capsys):
    pytest.importorskip(
        "peft", reason="peft is not installed in this venv: make setup (or pip install -c constraints.txt peft)"
    )
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    out = tmp_path / "lora"
    code, _, err = w2s(capsys, *dpo_args(base, data, out, "--lora", "--lora-r", "4", "--lr", "5e-2"))
    assert code == 0, err
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / RECORD).read_text())["saved"].startswith("merged LoRA weights")
    history = losses(out)
    assert history[-1] < history[0]
    tuned, untuned = load(out), load(base)  # a plain model directory: what the studies load
    assert not any(k.startswith("base_model") or "lora" in k for k in tuned.model.state_dict())
    assert implicit_wins(tuned, untuned, pairs()) > 0.5


def test_dpo_reads_pairs_as_imdb_preference_stores_them(base, tmp_path, capsys):
    """ZHZisZZ/imdb_preference keeps `responses` (two texts) and `chosen` (the preferred one's index)."""
    rows = [{"prompt": r["prompt"], "responses": [r["rejected"], r["chosen"]], "chosen": 1} for r in pairs()]
    assert indexed_pairs(rows, "x") == [
        r | {"chosen": p["chosen"], "rejected": p["rejected"]} for r, p in zip(rows, pairs(), strict=True)
    ]
    data = write_jsonl(tmp_path / "indexed.jsonl", rows)
    code, _, err = w2s(capsys, *dpo_args(base, data, tmp_path / "dpo"))
    assert code == 0, err
    assert implicit_wins(load(tmp_path / "dpo"), load(base), pairs()) >= 0.9  # learnt which response was preferred
