"""`w2s winrate`: the alpaca_eval package's raw and LC win rates from an annotations file, reproducing a published
leaderboard entry; local LC files are labelled approximate, and nothing is written into site-packages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import shared, w2s

from harness.alpaca import LCFiles, import_alpaca_eval, win_rates
from harness.errors import UsageError

FUSECHAT = ("alpaca_eval", "results", "FuseChat-Llama-3.1-8B-Instruct", "weighted_alpaca_eval_gpt4_turbo")
LEADERBOARD = {"win_rate": 63.33158292362734, "length_controlled_winrate": 65.38623116037492}  # the board's row


def approx_files() -> list[str]:
    return [
        "--df-gamed",
        str(shared("alpaca_eval", "approx", "df_gamed_approx.csv")),
        "--instruction-difficulty",
        str(shared("alpaca_eval", "approx", "instruction_difficulty_approx.csv")),
    ]


def tree(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_winrate_reproduces_a_leaderboard_entry_labelled_approximate(capsys, tmp_path, monkeypatch):
    package = Path(import_alpaca_eval().__file__).parent
    before = tree(package)
    monkeypatch.chdir(tmp_path)
    code, out, err = w2s(capsys, "winrate", str(shared(*FUSECHAT)), *approx_files(), "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    assert round(result["win_rate"], 2) == round(LEADERBOARD["win_rate"], 2) == 63.33
    assert abs(result["length_controlled_winrate"] - LEADERBOARD["length_controlled_winrate"]) < 1.0
    assert result["standard_error"] > 0 and result["lc_standard_error"] > 0
    assert result["approximate"] is True and result["n_total"] == 805 and result["n_missing"] == 0
    assert "win rate:    63.33 ± 1.42" in out and "(approximate" in next(line for line in lines if "LC" in line)
    assert tree(package) == before and list(tmp_path.iterdir()) == []  # no GLM weights saved anywhere


def test_without_local_files_the_hub_is_asked_and_its_absence_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    code, _, err = w2s(capsys, "winrate", str(shared(*FUSECHAT)))
    assert code == 2 and err.count("\n") == 1
    assert "needs df_gamed.csv from the hub dataset tatsu-lab/alpaca_eval" in err and "--df-gamed PATH" in err


def test_the_package_gets_its_hub_files_through_lc_files_only_while_served():
    glm = import_alpaca_eval("alpaca_eval.metrics.glm_winrate")
    original, local = glm.hf_hub_download, str(shared("alpaca_eval", "approx", "df_gamed_approx.csv"))
    files = LCFiles(df_gamed=local)
    with files.served():
        assert glm.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv") == local
    assert glm.hf_hub_download is original and files.approximate
    hub = LCFiles()  # a file the download function returns (the hub, or its local cache) is the hub's own
    assert hub.fetch("df_gamed.csv", lambda filename, **kwargs: local) == local
    assert hub.used == {"df_gamed.csv": "hub"} and not hub.approximate
    rows = json.loads((shared(*FUSECHAT) / "annotations.json").read_text())[:200]
    result = win_rates(rows, LCFiles(df_gamed=local))
    assert result["approximate"] and result["lc_files"] == {"df_gamed.csv": local} and result["n_total"] == 200


def test_failed_verdicts_are_left_out_of_the_raw_win_rate():
    rows = json.loads((shared(*FUSECHAT) / "annotations.json").read_text())[:100]
    files = LCFiles(df_gamed=str(shared("alpaca_eval", "approx", "df_gamed_approx.csv")))
    full = win_rates(rows, files)
    missing = [dict(r, preference=None) if i < 10 else r for i, r in enumerate(rows)]
    partial = win_rates(missing, files)
    expected = sum(float(r["preference"]) - 1 for r in rows[10:]) / 90 * 100
    assert partial["n_missing"] == 10 and partial["n_total"] == 90
    assert partial["win_rate"] == pytest.approx(expected) and full["n_total"] == 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not readable JSON"),
        ('{"a": 1}', "must be a JSON list of objects"),
        ('[{"preference": 1.5}]', "lacks output_1, output_2, generator_1, generator_2"),
    ],
)
def test_bad_annotation_files_are_one_line_errors(capsys, tmp_path, content, message):
    path = tmp_path / "annotations.json"
    path.write_text(content)
    code, _, err = w2s(capsys, "winrate", str(path), *approx_files())
    assert code == 2 and err.count("\n") == 1 and message in err


def test_bad_preferences_and_sizes_are_refused():
    row = {"output_1": "a", "output_2": "bb", "generator_1": "ref", "generator_2": "m", "preference": 1.2}
    files = LCFiles(df_gamed=os.devnull)
    with pytest.raises(UsageError, match="expected a number in \\[1, 2\\]"):
        win_rates([row, dict(row, preference=3)], files)
    with pytest.raises(UsageError, match="expected a number in \\[1, 2\\] or null"):
        win_rates([row, dict(row, preference="better")], files)
    with pytest.raises(UsageError, match="win rates need 2 to 805 annotations"):
        win_rates([row], files)
