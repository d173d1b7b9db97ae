"""`w2s leaderboard`: judged runs placed in the AlpacaEval 2.0 board shipped with alpaca-eval, each number named with
its judge; a published entry re-scored through the harness lands beside the board's own row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import shared, w2s

from harness.alpaca import LCFiles, win_rates
from harness.judges import LEADERBOARD_ANNOTATOR, LEADERBOARD_MODEL, OPENAI_BASE_URL
from reports.leaderboard import Entry, board_path, place, read_board

FUSECHAT = "FuseChat-Llama-3.1-8B-Instruct"


def judged_cell(root: Path, cell: str, judge: dict, annotations: list[dict]) -> Path:
    """A cell's judge-<name>/winrate.json as harness.judging writes it, from alpaca_eval annotations."""
    approx = shared("alpaca_eval", "approx")
    files = LCFiles(str(approx / "df_gamed_approx.csv"), str(approx / "instruction_difficulty_approx.csv"))
    result = {"judge": judge, "n": len(annotations), "n_failed": 0} | win_rates(annotations, files)
    where = root / cell / f"judge-{judge['name']}"
    where.mkdir(parents=True)
    (where / "winrate.json").write_text(json.dumps(result))
    return where


GPT4_JUDGE = {
    "name": "gpt4",
    "kind": "openai",
    "annotator": LEADERBOARD_ANNOTATOR,
    "model": LEADERBOARD_MODEL,
    "base_url": OPENAI_BASE_URL,
    "comparable_to_leaderboard": True,
}  # the leaderboard's own judge


def fusechat_annotations() -> list[dict]:
    """The published gpt-4-turbo verdicts on FuseChat's outputs, as shipped in ../shared/data."""
    path = shared("alpaca_eval", "results", FUSECHAT, "weighted_alpaca_eval_gpt4_turbo") / "annotations.json"
    return json.loads(path.read_text())


def test_a_published_entry_rescored_lands_beside_its_board_row(tmp_path, capsys):
    annotations, gpt4 = fusechat_annotations(), GPT4_JUDGE
    local = {"name": "rm", "kind": "reward_model", "model": "./rm", "comparable_to_leaderboard": False}
    runs = tmp_path / "runs"
    judged_cell(runs, "ae/fusechat/plain/seed-0", gpt4, annotations)
    judged_cell(runs, "ae/fusechat/plain/seed-0", local, [dict(a, preference=1.1) for a in annotations])
    code, out, err = w2s(capsys, "leaderboard", str(runs), "--around", "2")
    assert code == 0, err
    board = read_board(board_path())
    ranked = [row for row in csv.DictReader((runs / "leaderboard" / "leaderboard.csv").open())]
    assert len(ranked) == len(board) + 2 and [int(r["rank"]) for r in ranked] == list(range(1, len(ranked) + 1))
    names = [r["model"] for r in ranked]
    ours, theirs = names.index("runs/ae/fusechat/plain/seed-0 [gpt4]"), names.index(FUSECHAT)
    assert abs(ours - theirs) <= 2
    assert abs(float(ranked[ours]["lc_winrate"]) - float(ranked[theirs]["lc_winrate"])) < 1.0
    assert round(float(ranked[ours]["win_rate"]), 2) == round(float(ranked[theirs]["win_rate"]), 2)
    assert "not comparable" not in ranked[ours]["note"] and "approximate" in ranked[ours]["note"]
    rm = ranked[names.index("runs/ae/fusechat/plain/seed-0 [rm]")]
    assert "not comparable with the leaderboard" in rm["note"] and rm["judge"] == "rm (./rm)"
    lcs = [float(r["lc_winrate"]) for r in ranked if r["lc_winrate"]]
    assert lcs == sorted(lcs, reverse=True)
    table = (runs / "leaderboard" / "leaderboard.md").read_text()
    assert f"| {ours + 1} | **runs/ae/fusechat/plain/seed-0 [gpt4]** |" in table
    assert "judge rm (./rm); not comparable with the leaderboard" in out
    assert f"rank {ours + 1}/{len(ranked)}: runs/ae/fusechat/plain/seed-0 [gpt4]" in out
    assert (runs / "leaderboard" / "leaderboard.png").stat().st_size > 10_000


def test_a_run_on_part_of_the_eval_set_does_not_compare_with_the_board(tmp_path, capsys):
    """The board's numbers cover all 805 instructions: a run on fewer (a `limit`) is placed but marked, even when
    judged by the board's own judge."""
    annotations, gpt4 = fusechat_annotations(), GPT4_JUDGE
    runs = tmp_path / "runs"
    judged_cell(runs, "ae/fusechat/plain/seed-0", gpt4, annotations[:100])
    code, out, err = w2s(capsys, "leaderboard", str(runs))
    assert code == 0, err
    [ours] = [r for r in csv.DictReader((runs / "leaderboard" / "leaderboard.csv").open()) if "[gpt4]" in r["model"]]
    assert "not comparable with the leaderboard" in ours["note"] and "100 of 805 instructions" in ours["note"]
    assert "not comparable with the leaderboard" in out


def test_rows_without_an_lc_go_last_and_runs_follow_equal_board_rows():
    board = [
        Entry("a", 10.0, 1.0, 9.0, 1.0, "j"),
        Entry("b", None, None, 5.0, 1.0, "j"),
        Entry("c", 30.0, 1, 2, 1, "j"),
    ]
    runs = [Entry("r", 10.0, 2.0, 8.0, 2.0, "k", comparable=False, run=True)]
    assert [e.name for e in place(board, runs)] == ["c", "a", "r", "b"]
    assert runs[0].note == "this run; not comparable with the leaderboard"
