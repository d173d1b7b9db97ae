"""Figure 4 from a judged AlpacaEval study: generated, judged by a local reward model through the judges' own code
path, then reported (LC per strong model and method, the guide alone as reference, the compute companion), with the
labels that apply; read from run directories only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import shared, w2s

from harness.judging import NOT_COMPARABLE
from reports.fig4 import APPROXIMATE, NO_GUIDE, fig4_data, judges, write_fig4
from reports.figures import save
from reports.load import load_study


@pytest.fixture(scope="module")
def judged_runs(chat_paths, tmp_path_factory) -> Path:
    """A finished alpacaeval study over two seeds: a guide-free entry (plain, urial) and a guided one (best-of-2,
    CBS, the guide alone), judged by the local reward model with the approximate LC files."""
    tmp = tmp_path_factory.mktemp("fig4")
    approx = shared("alpaca_eval", "approx")
    words = ("apple", "pear", "plum", "fig")
    rows = [
        {"instruction": f"Say {w} twice.", "output": f"{w} {w}.", "generator": "ref", "dataset": "d"} for w in words
    ]
    (tmp / "eval.json").write_text(json.dumps(rows))
    common = {
        "task": "alpacaeval",
        "data": str(tmp / "eval.json"),
        "strong": ["strong"],
        "judges": ["rm"],
        "df_gamed": str(approx / "df_gamed_approx.csv"),
        "instruction_difficulty": str(approx / "instruction_difficulty_approx.csv"),
        "sample": {"max_new_tokens": 5},
    }
    raw = {
        "study": "fig4",
        "out": str(tmp / "runs"),
        "seeds": [0, 1],
        "limit": 4,
        "batch_size": 4,
        "device": "cpu",
        "dtype": "float32",
        "models": {name: {"path": str(chat_paths[name]), "chat": True} for name in ("strong", "tuned", "untuned")},
        "guides": {"g": {"tuned": "tuned", "untuned": "untuned"}},
        "judges": {"rm": {"kind": "reward_model", "path": str(chat_paths["reward"])}},
        "tasks": {
            "ae": common | {"methods": ["plain", "urial"]},
            "ae-g": common
            | {
                "guide": "g",
                "methods": [{"bon": {"n": 2}}, {"cbs": {"width": 2, "successors": 2, "chunk_length": 2}}, "guide"],
            },
        },
    }
    config = tmp / "study.yaml"
    config.write_text(json.dumps(raw))
    code = w2s_main("run", str(config), "--no-progress")
    assert code == 0
    return tmp / "runs"


def w2s_main(*args: str) -> int:
    from harness.cli import main

    try:
        return main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def winrate(runs: Path, cell: str) -> dict:
    return json.loads((runs / cell / "judge-rm" / "winrate.json").read_text())


def test_fig4_points_pool_seeds_and_take_the_guide_alone_as_reference(judged_runs):
    study = load_study(judged_runs)
    found = judges(study)
    assert list(found) == ["rm"] and found["rm"]["comparable_to_leaderboard"] is False
    data = fig4_data(study, "rm", found["rm"])
    assert [p.guide for p in data.panels] == ["g"]  # the guide-free cells join the guide's panel
    assert data.strongs == ["strong"]
    assert data.labels == ["plain", "bon(N=2)", "cbs(W=2,K=2,L=2)", "urial"]
    panel = data.panels[0]
    for cell, label in [("ae/strong/plain", "plain"), ("ae-g/strong/cbs-W2-K2-L2", "cbs(W=2,K=2,L=2)")]:
        seeds = [winrate(judged_runs, f"{cell}/seed-{s}") for s in (0, 1)]
        point = panel.points["strong", label]
        assert point.lc == pytest.approx(sum(r["length_controlled_winrate"] for r in seeds) / 2)
        assert point.se == pytest.approx(math.sqrt(sum(r["lc_standard_error"] ** 2 for r in seeds)) / 2)
        assert point.seeds == 2 and point.approximate and point.tokens > 0
    alone = [winrate(judged_runs, f"ae-g/tuned/guide/seed-{s}") for s in (0, 1)]
    assert panel.reference_model == "tuned"
    assert panel.reference.lc == pytest.approx(sum(r["length_controlled_winrate"] for r in alone) / 2)
    assert APPROXIMATE in data.title and NOT_COMPARABLE in data.title


def test_report_writes_fig4_its_compute_companion_and_table(judged_runs, tmp_path, capsys):
    code, out, err = w2s(capsys, "report", str(judged_runs), "--out", str(tmp_path))
    assert code == 0, err
    for name in ("fig4-rm.png", "fig4-rm.pdf", "fig4-compute-rm.png", "fig4-compute-rm.pdf", "fig4-rm.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = (tmp_path / "fig4-rm.md").read_text()
    assert NOT_COMPARABLE in table and "Approximate" in table
    plain = winrate(judged_runs, "ae/strong/plain/seed-0")["length_controlled_winrate"]
    plain1 = winrate(judged_runs, "ae/strong/plain/seed-1")["length_controlled_winrate"]
    assert f"| g | strong | plain | {(plain + plain1) / 2:.1f} |" in table
    assert "| g | tuned | guide |" in table
    assert not (tmp_path / "fig3-ae.png").exists()  # no gold reward in an alpacaeval task: no Fig. 3
    assert "no fig3-ae" in out


def test_unjudged_alpacaeval_cells_are_a_note_and_a_study_without_guides_has_one_panel(judged_runs, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(judged_runs / "ae", runs / "ae")
    study = load_study(runs)
    assert fig4_data(study, "rm", {"name": "rm"}).panels[0].guide == NO_GUIDE
    for judged in runs.rglob("judge-rm"):
        shutil.rmtree(judged)
    written, notes = write_fig4(load_study(runs), tmp_path / "report", save)
    assert written == [] and notes == ["no fig4: no alpacaeval cell has been judged yet (no judge-*/winrate.json)"]
