"""`w2s report` on a synthetic study: every file written, numbers that match the statistics computed by hand."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
from conftest import w2s

from harness.cli import main
from harness.stats import paired, summarize
from harness.store import SampleLog, write_json
from reports.figures import compute_figure, fig3, method_styles, proxy_figure
from reports.load import load_study

TASKS = {"imdb": (), "tldr": ("rouge1", "rougeL")}  # task -> its extra score keys
STRONGS = ["gpt2-medium", "gpt2-large"]  # config order, deliberately not alphabetical
CBS4 = {"width": 4, "successors": 4, "chunk_length": 5}
CBS2 = {"width": 2, "successors": 2, "chunk_length": "inf"}
METHODS = [  # in report order: family, label, slug, params, gold lift, strong and guide tokens per sample
    ("plain", "plain", "plain", {}, 0.0, 60, 0),
    ("bon", "bon(N=16)", "bon-N16", {"n": 16}, 0.5, 960, 1600),
    ("cbs", "cbs(W=2,K=2,L=inf)", "cbs-W2-K2-Linf", CBS2, 0.3, 240, 400),
    ("cbs", "cbs(W=4,K=4,L=5)", "cbs-W4-K4-L5", CBS4, 0.9, 980, 1700),
    ("eft", "eft(beta=1)", "eft-beta1", {"beta": 1}, 0.4, 60, 120),
]
SEEDS = [0, 1]
PROMPTS = [f"p{i:02d}" for i in range(10)]
# a plain cell that lost one prompt, so pairing by id (not by position) matters
SHORT_PLAIN = ("imdb", "gpt2-large", 1)
INCOMPLETE = Path("imdb/gpt2-large/cbs-W8-K8-L5/seed-0")


def _records(task: str, strong: str, family: str, lift: float, tokens: tuple[int, int], seed: int) -> list[dict]:
    rng = np.random.default_rng([list(TASKS).index(task), STRONGS.index(strong), int(lift * 10), seed])
    strong_bonus = 0.4 * STRONGS.index(strong)
    records = []
    for i, pid in enumerate(PROMPTS):
        if family == "plain" and (task, strong, seed) == SHORT_PLAIN and pid == "p03":
            continue
        gold = 0.1 * i + lift + strong_bonus + rng.normal(0, 0.3)
        scores = {"gold": float(gold)}
        if not (task == "imdb" and family == "plain"):  # imdb's plain cells carry no guide score
            scores["guide"] = float(2 * lift + rng.normal(0, 0.5))
        for extra in TASKS[task]:
            scores[extra] = float(rng.uniform(0.1, 0.5))
        records.append(
            {
                "id": pid,
                "seed": seed,
                "request_seed": 1000 * seed + i,
                "prompt": f"prompt {pid}",
                "response": "text",
                "finish_reason": "eos",
                "tokens": 20 + i,
                "compute": {
                    "strong_tokens": tokens[0] + i,
                    "strong_forward_passes": 30,
                    "guide_tokens": tokens[1] + 2 * i if tokens[1] else 0,
                    "guide_forward_passes": 10 if tokens[1] else 0,
                    "seconds": 0.5,
                },
                "trace": [[float(gold)]],
                "scores": scores,
            }
        )
    return records[::-1] if family == "cbs" else records  # some cells log prompts out of order


def _summary(cell: dict, records: list[dict]) -> dict:
    keys = list(records[0]["scores"])
    compute = {k: summarize([r["compute"][k] for r in records]) for k in records[0]["compute"]}
    compute["response_tokens"] = summarize([r["tokens"] for r in records])
    return {
        "cell": cell,
        "n": len(records),
        "ids": [r["id"] for r in records],
        "metrics": {k: summarize([r["scores"][k] for r in records]) for k in keys},
        "compute": compute,
    }


def _write_cell(root: Path, cell: dict, records: list[dict], *, finished: bool = True) -> Path:
    path = root / cell["task"] / cell["strong"] / cell["slug"] / f"seed-{cell['seed']}"
    config = {"tasks": {task: {"strong": STRONGS} for task in TASKS}}
    manifest = {"study": "synthetic", "cell": cell, "config": config, "versions": {}, "git_commit": None,
                "device": "cpu", "created": "2025-01-01T00:00:00"}  # fmt: skip
    write_json(path / "manifest.json", manifest)
    SampleLog(path).append(records)
    if finished:
        write_json(path / "summary.json", _summary(cell, records))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    """A study on disk, and every finished cell's records keyed by (task, strong, label, seed)."""
    root = tmp_path_factory.mktemp("study") / "runs"
    data = {}
    for task in TASKS:
        for strong in STRONGS:
            for family, label, slug, params, lift, *tokens in METHODS:
                for seed in SEEDS:
                    cell = {"task": task, "strong": strong, "method": family, "label": label, "slug": slug,
                            "params": params, "seed": seed}  # fmt: skip
                    records = _records(task, strong, family, lift, tuple(tokens), seed)
                    _write_cell(root, cell, records)
                    data[task, strong, label, seed] = records
    params = {"width": 8, "successors": 8, "chunk_length": 5}
    incomplete = {"task": "imdb", "strong": "gpt2-large", "method": "cbs", "label": "cbs(W=8,K=8,L=5)",
                  "slug": "cbs-W8-K8-L5", "params": params, "seed": 0}  # fmt: skip
    _write_cell(root, incomplete, _records("imdb", "gpt2-large", "cbs", 1.2, (2000, 3000), 0)[:3], finished=False)
    return root, data


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> tuple[Path, str]:
    """The report, written once for the module: its directory and what the command printed."""
    root, _ = study
    out = tmp_path_factory.mktemp("report")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["report", str(root), "--out", str(out)]) == 0
    return out, printed.getvalue()


def stat(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def diff(d: dict) -> list[str]:
    return [f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]", f"{d['p_value']:.3g}"]


def gold(records: list[dict]) -> dict[str, float]:
    return {r["id"]: r["scores"]["gold"] for r in records}


def seed_mean(data: dict, task: str, strong: str, label: str, key: str = "gold") -> dict[str, float]:
    """Prompt id -> score averaged over the seeds that have it, computed without the reports package."""
    values: dict[str, list[float]] = {}
    for seed in SEEDS:
        for r in data[task, strong, label, seed]:
            values.setdefault(r["id"], []).append(r["scores"][key])
    return {pid: float(np.mean(v)) for pid, v in sorted(values.items())}


def rows(table: str, section: str) -> dict[tuple[str, ...], list[str]]:
    """A table section's rows, keyed by their first four columns."""
    part = table.split("## ")[[s.split("\n")[0] for s in table.split("## ")].index(section)]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| ")]
    return {tuple(c[:4]): c for c in cells[1:]}


def test_report_writes_every_figure_and_the_table(report):
    out, printed = report
    for task in TASKS:
        for name in (f"fig3-{task}", f"compute-{task}", f"proxy-gold-{task}"):
            image = matplotlib.image.imread(out / f"{name}.png")
            assert image.ndim == 3 and image.shape[1] >= 600 and image.shape[0] >= 400
            assert image[..., :3].std() > 0.05  # not a blank canvas
            assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
            assert f"wrote {out / name}.png" in printed and f"wrote {out / name}.pdf" in printed
    assert f"wrote {out / 'table.md'}" in printed


def test_incomplete_cell_is_skipped_and_said_so(study, report):
    root, _ = study
    out, printed = report
    assert f"skipped incomplete cell (no summary.json): {root / INCOMPLETE}" in printed
    table = (out / "table.md").read_text()
    assert f"- {INCOMPLETE.as_posix()}" in table and "cbs(W=8,K=8,L=5) |" not in table


def test_cell_table_has_every_cell_with_its_summary_and_paired_difference(study, report):
    _, data = study
    table = rows((report[0] / "table.md").read_text(), "Per cell")
    assert len(table) == len(data)
    keys = list(table)
    assert keys.index(("imdb", "gpt2-medium", "plain", "0")) < keys.index(("imdb", "gpt2-large", "plain", "0"))
    for (task, strong, label, seed), records in data.items():
        row = table[task, strong, label, str(seed)]
        assert row[4] == str(len(records))
        assert row[5] == stat(summarize([r["scores"]["gold"] for r in records]))
        if label == "plain":
            assert row[-2:] == ["—", "—"]
    # the short plain cell: pairing must align prompt ids, not positions, and drop the prompt plain lacks
    task, strong, seed = SHORT_PLAIN
    base, cbs = gold(data[task, strong, "plain", seed]), gold(data[task, strong, "cbs(W=4,K=4,L=5)", seed])
    ids = sorted(base.keys() & cbs.keys())
    assert len(ids) == len(PROMPTS) - 1
    expected = paired([cbs[i] for i in ids], [base[i] for i in ids])
    assert expected["mean_diff"] > 0.5
    assert table[task, strong, "cbs(W=4,K=4,L=5)", str(seed)][-2:] == diff(expected)


def test_cell_table_reports_extras_tokens_and_dashes_for_missing_scores(study, report):
    _, data = study
    text = (report[0] / "table.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| task | strong | method | seed"))
    assert header.split(" | ")[5:10] == ["gold", "guide", "rouge1", "rougeL", "strong tokens"]
    table = rows(text, "Per cell")
    records = data["tldr", "gpt2-large", "bon(N=16)", 1]
    row = table["tldr", "gpt2-large", "bon(N=16)", "1"]
    assert row[7] == stat(summarize([r["scores"]["rouge1"] for r in records]))
    assert row[9] == f"{np.mean([r['compute']['strong_tokens'] for r in records]):.1f}"
    assert row[10] == f"{np.mean([r['compute']['guide_tokens'] for r in records]):.1f}"
    imdb_plain = table["imdb", "gpt2-medium", "plain", "0"]
    assert imdb_plain[6] == "—" and imdb_plain[7] == "—"  # no guide score, no ROUGE on imdb


def test_pooled_table_averages_seeds_per_prompt_before_summarising(study, report):
    _, data = study
    table = rows((report[0] / "table.md").read_text(), "Pooled over seeds")
    assert len(table) == len(TASKS) * len(STRONGS) * len(METHODS)
    row = table["tldr", "gpt2-medium", "eft(beta=1)", "0, 1"]
    per_prompt = seed_mean(data, "tldr", "gpt2-medium", "eft(beta=1)")
    assert row[4] == str(len(PROMPTS)) and row[5] == stat(summarize(list(per_prompt.values())))
    # paired over the (seed, prompt) pairs both have: the short plain cell's missing prompt counts from seed 0 only
    task, strong, _ = SHORT_PLAIN
    a = {(s, r["id"]): r["scores"]["gold"] for s in SEEDS for r in data[task, strong, "bon(N=16)", s]}
    b = {(s, r["id"]): r["scores"]["gold"] for s in SEEDS for r in data[task, strong, "plain", s]}
    ids = sorted({pid for _, pid in b})
    mean = {pid: (np.mean([a[k] for k in b if k[1] == pid]), np.mean([b[k] for k in b if k[1] == pid])) for pid in ids}
    expected = paired([mean[i][0] for i in ids], [mean[i][1] for i in ids])
    assert table[task, strong, "bon(N=16)", "0, 1"][-2:] == diff(expected)


def test_fig3_plots_seed_pooled_gold_per_strong_model_in_config_order(study):
    root, data = study
    loaded = load_study(root)
    styles = method_styles(loaded)
    figure = fig3(loaded, ["imdb"], styles)
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == STRONGS
    series = {c.get_label(): c for c in ax.containers}
    assert list(series) == [m[1] for m in METHODS]
    for label, container in series.items():
        means = [summarize(list(seed_mean(data, "imdb", s, label).values()))["mean"] for s in STRONGS]
        np.testing.assert_allclose(np.asarray(container.lines[0].get_ydata(), dtype=float), means)
    assert ax.get_ylabel() == "gold reward (mean, 95% CI)" and ax.get_title() == "imdb"
    assert [a.get_title() for a in fig3(loaded, list(TASKS), styles).axes] == list(TASKS)  # a panel per task
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [m[1] for m in METHODS]


def test_method_colours_follow_families_and_stay_fixed_across_tasks(study):
    loaded = load_study(study[0])
    styles = method_styles(loaded)
    rgb = {label: np.array(matplotlib.colors.to_rgb(s["color"])) for label, s in styles.items()}
    assert np.ptp(rgb["plain"]) < 0.01  # grey
    assert rgb["bon(N=16)"].argmax() == 2 and rgb["eft(beta=1)"].argmax() == 1
    cbs = [rgb["cbs(W=4,K=4,L=5)"], rgb["cbs(W=2,K=2,L=inf)"]]
    assert all(c.argmax() == 0 for c in cbs) and not np.allclose(*cbs)
    colours = [
        {c.get_label(): c.lines[0].get_color() for c in fig3(loaded, [task], styles).axes[0].containers}
        for task in TASKS
    ]
    assert colours[0] == colours[1]


def test_compute_figure_places_methods_at_their_mean_tokens(study):
    root, data = study
    loaded = load_study(root)
    figure = compute_figure(loaded, "tldr", method_styles(loaded))
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == STRONGS
    assert axes[0].get_xscale() == "log" and axes[0].get_xlabel() == "tokens read per sample (strong + guide)"
    strong, label = "gpt2-large", "cbs(W=4,K=4,L=5)"
    records = [r for s in SEEDS for r in data["tldr", strong, label, s]]
    tokens = np.mean([r["compute"]["strong_tokens"] + r["compute"]["guide_tokens"] for r in records])
    point = next(c for c in axes[1].containers if c.get_label() == label).lines[0]
    assert point.get_xdata()[0] == pytest.approx(tokens)
    assert point.get_ydata()[0] == pytest.approx(np.mean(list(seed_mean(data, "tldr", strong, label).values())))


def test_proxy_figure_skips_methods_without_guide_scores(study):
    root, data = study
    loaded = load_study(root)
    styles = method_styles(loaded)
    imdb, tldr = proxy_figure(loaded, "imdb", styles), proxy_figure(loaded, "tldr", styles)
    assert "plain" not in [t.get_text() for t in imdb.legends[0].get_texts()]
    assert "plain" in [t.get_text() for t in tldr.legends[0].get_texts()]
    records = [r for s in SEEDS for r in data["imdb", "gpt2-medium", "bon(N=16)", s]]
    mean = next(c for c in imdb.axes[0].collections if c.get_label() == "bon(N=16)").get_offsets()[0]
    expected = [np.mean([r["scores"][k] for r in records]) for k in ("guide", "gold")]
    np.testing.assert_allclose(mean, expected)


@pytest.mark.parametrize("layout", ["missing", "empty", "only-incomplete", "bad-summary"])
def test_report_on_bad_input_exits_2_with_one_line(tmp_path, capsys, layout):
    root = tmp_path / "runs"
    if layout != "missing":
        root.mkdir()
    if layout in ("only-incomplete", "bad-summary"):
        cell = {"task": "imdb", "strong": "gpt2", "method": "plain", "label": "plain", "slug": "plain", "seed": 0}
        path = _write_cell(root, cell, _records("imdb", "gpt2-large", "plain", 0.0, (60, 0), 0), finished=False)
        if layout == "bad-summary":
            (path / "summary.json").write_text("{not json")
    code, _, err = w2s(capsys, "report", str(root))
    message = {"missing": "does not exist", "empty": "no cells under", "only-incomplete": "no finished cells",
               "bad-summary": "is not readable JSON"}[layout]  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and message in err and str(root) in err
    assert not (root / "report").exists()


def test_cli_help_imports_neither_matplotlib_nor_torch():
    code = (
        "import sys, harness.cli; harness.cli.build_parser(); print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_never_imports_torch(study, tmp_path):
    code = (
        "import sys; from harness.cli import main; "
        f"rc = main(['report', {str(study[0])!r}, '--out', {str(tmp_path)!r}]); "
        "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False False"
