"""`w2s reproduce`: a recipe's training steps run in order and are cached under a hash of what they depend on, its
study runs over what they built, and the report (two-panel Fig. 3, table, summary, the models' own metrics) is
written; --dry-run prints every step and cell and builds nothing."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import study_dict

from training.recipe import load_recipe
from training.tune import CHECKPOINTS

ROOT = Path(__file__).resolve().parents[1]


def w2s(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def write_recipe(tmp: Path) -> Path:
    """A tiny recipe over 120 shipped IMDB test reviews: tokenizer, three small language models, a sentiment gold."""
    with gzip.open(ROOT / "data" / "imdb" / "test_500.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f][:120]
    (tmp / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gold = "--eval reviews.jsonl --steps 20"
    lm = "train lm ${out} --tokenizer ${tokenizer} --text reviews.jsonl --layers 1 --dim 32 --steps 3 --batch 4"
    recipe = {
        "recipe": "tiny",
        "zoo": "zoo",
        "steps": [
            {"name": "tokenizer", "run": "train tokenizer ${out} --text reviews.jsonl --vocab 300"},
            {"name": "strong", "run": f"{lm} --seed 1 --eval reviews.jsonl --eval-limit 8"},
            {"name": "untuned", "run": f"{lm} --seed 2"},
            {"name": "tuned", "run": f"{lm} --seed 3"},
            {"name": "gold", "run": "train sentiment ${out} --tokenizer ${tokenizer} --data reviews.jsonl " + gold},
        ],
        "study": {
            "study": "tiny",
            "seeds": [0],
            "limit": 2,
            "batch_size": 2,
            "device": "cpu",
            "dtype": "float32",
            "models": {"strong": "${strong}", "guide-tuned": "${tuned}", "guide-untuned": "${untuned}"},
            "guides": {"g": {"tuned": "guide-tuned", "untuned": "guide-untuned"}},
            "tasks": {
                "imdb": {
                    "data": "reviews.jsonl",
                    "gold": "${gold}",
                    "guide": "g",
                    "template": "{prompt}",
                    "strong": ["strong"],
                    "sample": {"max_new_tokens": 4},
                }
            },
            "methods": ["plain", {"cbs": {"width": 2, "successors": 2, "chunk_length": 2}}, "guide"],
        },
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_reproduce_builds_caches_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's relative paths, as the commands read them
    recipe = write_recipe(tmp_path)
    dry = w2s(tmp_path, "reproduce", str(recipe), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("[to build]") == 5 and "imdb | strong | cbs(W=2,K=2,L=2) | seed 0" in dry.stdout
    assert "imdb | guide-tuned | guide | seed 0" in dry.stdout and not (tmp_path / "zoo").exists()

    first = w2s(tmp_path, "reproduce", str(recipe))
    assert first.returncode == 0, first.stderr
    report = tmp_path / "runs" / "tiny" / "report"
    for name in ("fig3.png", "fig3.pdf", "table.md", "summary.md", "zoo.md"):
        assert (report / name).stat().st_size > 0, name
    assert "eval_perplexity" in (report / "zoo.md").read_text() and "eval_accuracy" in (report / "zoo.md").read_text()
    summary = (report / "summary.md").read_text()
    assert "cbs(W=2,K=2,L=2) − plain" in summary and "the tuned guide alone (guide-tuned)" in summary

    steps = load_recipe(recipe).steps
    built = {s.name: (s.dir / "model.safetensors").stat().st_mtime_ns for s in steps if s.name != "tokenizer"}
    again = w2s(tmp_path, "reproduce", str(recipe), "--zoo-only")
    assert again.returncode == 0 and again.stdout.count(": cached in ") == 5, again.stdout + again.stderr
    assert built == {s.name: (s.dir / "model.safetensors").stat().st_mtime_ns for s in steps if s.name != "tokenizer"}

    # a changed input file changes the hash of every step that reads it, and of the steps built on those
    (tmp_path / "reviews.jsonl").write_text((tmp_path / "reviews.jsonl").read_text().replace("film", "movie", 1))
    changed = {s.name: s.hash for s in load_recipe(recipe).steps}
    assert all(changed[s.name] != s.hash for s in steps)


def test_step_hash_covers_command_and_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path)
    before = {s.name: s.hash for s in load_recipe(recipe).steps}
    raw = yaml.safe_load(recipe.read_text())
    raw["steps"][2]["run"] = raw["steps"][2]["run"].replace("--seed 2", "--seed 4")
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    after = {s.name: s.hash for s in load_recipe(recipe).steps}
    assert [n for n in before if before[n] != after[n]] == ["untuned"]  # and not the steps that do not use it
    assert load_recipe(recipe, zoo="elsewhere").steps[0].dir == Path("elsewhere") / f"tokenizer-{before['tokenizer']}"


def test_a_killed_tune_step_resumes_from_its_checkpoint(zoo, gold_paths, data_dir, tmp_path, monkeypatch):
    """The step's scratch directory survives a kill, so `w2s tune` carries on from its last checkpoint."""
    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": f"Review {i}:", "completion": " a good film"} for i in range(8)]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tune = (
        f"tune sft {zoo.paths['untuned']} sft.jsonl ${{out}} --max-steps 24 --save-steps 2 --batch-size 2 --device cpu"
    )
    recipe = tmp_path / "recipe.yaml"
    steps = [{"name": "sft", "run": tune}]
    recipe.write_text(yaml.safe_dump({"recipe": "r", "steps": steps, "study": study_dict(zoo, gold_paths, data_dir)}))
    step = load_recipe(recipe).steps[0]
    partial = step.dir.with_name(f".{step.dir.name}.partial") / CHECKPOINTS
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "reproduce", str(recipe), "--zoo-only"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(partial.glob("checkpoint-*/trainer_state.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written within 300 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not step.done, "the step finished before it could be killed"

    again = w2s(tmp_path, "reproduce", str(recipe), "--zoo-only")
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout + again.stderr and step.done
