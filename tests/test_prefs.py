"""`w2s prefs`: gold-labelled preference pairs from a small locally built model and gold classifier. The file is trl's
format and trains with `w2s tune dpo`, its scores are the gold reward's, the same seed gives the same file, and the
labels follow Bradley-Terry (or the higher reward with --label argmax)."""

from __future__ import annotations

import json
import math

import pytest
from conftest import w2s

from harness.scorers import Item, RewardModel
from harness.types import ModelSpec
from training.data import check_rows
from training.prefs import first_preferred, label_draw, sigmoid


@pytest.fixture
def prefs(zoo, gold_paths, data_dir, capsys):
    """Run `w2s prefs` over the small IMDB file; returns a function of extra arguments giving the file's rows."""

    def run(name: str, *extra: str) -> list[dict]:
        out = data_dir / name
        code, _, err = w2s(
            capsys, "prefs", str(zoo.paths["strong_ending"]), str(out), "--data", str(data_dir / "imdb.jsonl"),
            "--gold", str(gold_paths["sentiment"]), "--max-new-tokens", "5", "--device", "cpu", "--batch-size", "3",
            *extra,
        )  # fmt: skip
        assert code == 0, err
        return [json.loads(line) for line in out.read_text().splitlines()]

    return run


def test_pairs_are_trl_rows_scored_by_the_gold_reward(prefs, gold_paths, data_dir, zoo, capsys):
    rows = prefs("p.jsonl")
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8  # every review of the file, once
    assert check_rows("dpo", rows, "p.jsonl") == ("prompt", "chosen", "rejected")
    gold = RewardModel("gold", ModelSpec(str(gold_paths["sentiment"]), dtype="float32", device="cpu"))
    again = gold([Item(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")])
    assert again == pytest.approx([r[k] for r in rows for k in ("score_chosen", "score_rejected")], abs=1e-5)
    assert all(r["p_chosen"] == pytest.approx(sigmoid(r["score_chosen"] - r["score_rejected"])) for r in rows)
    assert sum(r["chosen"] != r["rejected"] for r in rows) >= 6  # two samples, not one twice
    args = ["--beta", "0.1", "--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--logging-steps", "1"]
    code, _, err = w2s(
        capsys, "tune", "dpo", str(zoo.paths["untuned"]), str(data_dir / "p.jsonl"), str(data_dir / "tuned"), *args
    )
    assert code == 0, err  # what prefs writes, tune trains on


def test_the_same_seed_gives_the_same_file_and_another_seed_another(prefs, data_dir):
    assert prefs("a.jsonl", "--seed", "3") == prefs("b.jsonl", "--seed", "3")
    assert (data_dir / "a.jsonl").read_bytes() == (data_dir / "b.jsonl").read_bytes()
    other = prefs("c.jsonl", "--seed", "4")
    assert [r["chosen"] for r in other] != [r["chosen"] for r in prefs("a.jsonl", "--seed", "3")]


def test_argmax_always_prefers_the_higher_reward_and_the_template_shapes_the_prompt(prefs):
    rows = prefs("p.jsonl", "--label", "argmax", "--template", "Here is a movie review from imdb: {prompt}")
    assert all(r["score_chosen"] >= r["score_rejected"] for r in rows)
    assert all(r["prompt"].startswith("Here is a movie review from imdb: Review ") for r in rows)


@pytest.mark.parametrize("margin", [-3.0, -1.0, -0.3, 0.0, 0.5, 1.5, 3.0])
def test_bradley_terry_labels_prefer_a_with_probability_sigmoid_of_the_margin(margin):
    n = 4000
    wins = sum(first_preferred(margin, 0.0, label_draw(7, f"p{i}"), "bt") for i in range(n))
    expected = 1 / (1 + math.exp(-margin))
    assert abs(wins / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-3  # within 4 standard errors
    assert all(first_preferred(margin, 0.0, label_draw(7, f"p{i}"), "argmax") == (margin >= 0) for i in range(50))


def test_a_label_draw_depends_on_the_seed_and_prompt_id_alone():
    assert label_draw(0, "p1") == label_draw(0, "p1")
    assert len({label_draw(0, "p1"), label_draw(1, "p1"), label_draw(0, "p2")}) == 3
    assert sigmoid(-800.0) == 0.0 and sigmoid(800.0) == 1.0  # no overflow on far-apart rewards
