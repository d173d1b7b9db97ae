"""Judges: alpaca_eval's weighted gpt-4-turbo annotator against a real OpenAI-compatible server on 127.0.0.1 (request
shape, logprob parsing, the cache, retries, a dead server), and a local reward model as a judge; both write the same
annotations and win rates, and the API key never reaches a file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared, w2s
from judge_server import JudgeServer, expected_preference
from loopback import FaultProxy, free_port, web_page

from harness.alpaca import LCFiles, import_alpaca_eval
from harness.errors import UsageError
from harness.judges import make_judge
from harness.judging import judge_cell, label

KEY_ENV = "W2S_TEST_JUDGE_KEY"
KEY = "sk-test-3f9c1e77d0b4"  # must never reach a file


@pytest.fixture
def lc_files() -> LCFiles:
    approx = shared("alpaca_eval", "approx")
    return LCFiles(str(approx / "df_gamed_approx.csv"), str(approx / "instruction_difficulty_approx.csv"))


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with JudgeServer(models=("judge-model", "other-model")) as s:
        yield s


def finished_cell(tmp_path: Path, n: int, special: dict[int, str] | None = None) -> tuple[Path, list[dict]]:
    """A finished cell (its model_outputs.json) of n instructions and the references it is judged against; the
    responses are longer than the reference for odd rows, so the scripted judge prefers them there."""
    references, outputs = [], []
    for i in range(n):
        instruction = (special or {}).get(i, f"Tell me about topic {i}.")
        references.append({"instruction": instruction, "output": "ref " * 3, "generator": "gpt4_1106_preview"})
        response = "response " * (4 if i % 2 else 1)
        outputs.append({"instruction": instruction, "output": response, "generator": "strong", "dataset": "d"})
    cell = tmp_path / "runs" / "ae" / "strong" / "plain" / "seed-0"
    cell.mkdir(parents=True)
    (cell / "model_outputs.json").write_text(json.dumps(outputs))
    return cell, references


def api_judge(base_url: str, name: str = "api", **options):
    return make_judge(
        name,
        {"kind": "openai", "model": "judge-model", "base_url": base_url, "api_key_env": KEY_ENV, **options},
    )


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def package_files() -> dict[str, float]:
    """Every file of the installed alpaca_eval package with its modification time."""
    root = Path(import_alpaca_eval().__file__).parent
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_the_annotator_asks_in_the_openai_wire_format_and_parses_logprobs(server, tmp_path, lc_files, capsys):
    cell, references = finished_cell(tmp_path, 6)
    before = package_files()
    result = judge_cell(cell, api_judge(server.base_url), references, lc_files, progress=False)
    assert package_files() == before  # nothing cached inside site-packages
    requests = server.completions()
    assert len(requests) == 6
    for request in requests:
        body, headers = request["body"], {k.lower(): v for k, v in request["headers"].items()}
        assert request["path"] == "/v1/chat/completions" and headers["authorization"] == f"Bearer {KEY}"
        assert body["model"] == "judge-model" and body["max_tokens"] == 1 and body["temperature"] == 1
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert '"model_identifier": "m"' in body["messages"][1]["content"]
    prompts = [r["body"]["messages"][1]["content"] for r in requests]
    for ref, out in zip(references, json.loads((cell / "model_outputs.json").read_text()), strict=True):
        assert any(ref["instruction"] in p and ref["output"] in p and out["output"] in p for p in prompts)
    annotations = json.loads((cell / "judge-api" / "annotations.json").read_text())
    assert [a["instruction"] for a in annotations] == [r["instruction"] for r in references]  # canonical order
    for a in annotations:
        assert a["preference"] == pytest.approx(expected_preference(a["output_1"], a["output_2"]))
        assert a["generator_1"] == "gpt4_1106_preview" and a["generator_2"] == "strong"
        assert a["annotator"] == "weighted_alpaca_eval_gpt4_turbo"
    written = json.loads((cell / "judge-api" / "winrate.json").read_text())
    assert written == json.loads(json.dumps(result))
    expected = sum(a["preference"] - 1 for a in annotations) / 6 * 100
    assert written["win_rate"] == pytest.approx(expected) and written["standard_error"] > 0
    assert written["length_controlled_winrate"] is not None and written["lc_standard_error"] is not None
    assert written["approximate"] is True and (written["n"], written["n_failed"]) == (6, 0)
    assert written["judge"] == {
        "name": "api",
        "kind": "openai",
        "annotator": "weighted_alpaca_eval_gpt4_turbo",
        "model": "judge-model",
        "base_url": server.base_url,
        "comparable_to_leaderboard": False,
    }
    # the same numbers as `w2s winrate` gives on the annotations file: one code path
    code, out, err = w2s(capsys, "winrate", str(cell / "judge-api"), *lc_args(lc_files), "--json")
    assert code == 0, err
    again = json.loads(out.strip().splitlines()[-1])
    assert again["win_rate"] == written["win_rate"]
    assert again["length_controlled_winrate"] == written["length_controlled_winrate"]
    assert files_holding(tmp_path, KEY) == []


def lc_args(files: LCFiles) -> list[str]:
    return ["--df-gamed", files.df_gamed, "--instruction-difficulty", files.instruction_difficulty]


def test_a_second_run_sends_no_request_and_another_judge_never_reuses_the_cache(server, tmp_path, lc_files):
    cell, references = finished_cell(tmp_path, 4)
    first = judge_cell(cell, api_judge(server.base_url), references, lc_files, progress=False)
    assert len(server.completions()) == 4
    assert judge_cell(cell, api_judge(server.base_url), references, lc_files, progress=False) == first
    assert len(server.completions()) == 4  # all from the cache
    # the same name pointing at another model is another judge: asked afresh, and both stay cached
    other = judge_cell(cell, api_judge(server.base_url, model="other-model"), references, lc_files, progress=False)
    assert len(server.completions()) == 8 and other["judge"]["model"] == "other-model"
    assert {r["body"]["model"] for r in server.completions()[4:]} == {"other-model"}
    cache = [json.loads(line) for line in (cell / "judge-api" / "cache.jsonl").read_text().splitlines()]
    assert len(cache) == 8 and {c["judge"]["model"] for c in cache} == {"judge-model", "other-model"}


def test_a_failed_verdict_is_recorded_as_failed_and_asked_again(server, tmp_path, lc_files):
    cell, references = finished_cell(tmp_path, 4, special={2: "NO VERDICT please."})
    result = judge_cell(cell, api_judge(server.base_url), references, lc_files, progress=False)
    annotations = json.loads((cell / "judge-api" / "annotations.json").read_text())
    assert annotations[2]["preference"] is None and "no verdict" in annotations[2]["failed"]
    assert all(a["preference"] is not None for i, a in enumerate(annotations) if i != 2)
    assert (result["n"], result["n_failed"], result["n_total"]) == (4, 1, 3)
    assert result["win_rate"] == pytest.approx(
        sum(a["preference"] - 1 for a in annotations if a["preference"]) / 3 * 100
    )
    cached = (cell / "judge-api" / "cache.jsonl").read_text().splitlines()
    assert len(cached) == 3  # the failed verdict is not cached ...
    judge_cell(cell, api_judge(server.base_url), references, lc_files, progress=False)
    assert len(server.completions()) == 5  # ... so the next run asks for it, and only it, again


def test_rate_limits_server_errors_and_timeouts_are_retried(server, tmp_path, lc_files):
    cell, references = finished_cell(tmp_path, 3)
    with FaultProxy(server.base_url, hang_seconds=3.0) as proxy:
        proxy.fail(429, 500, "timeout")
        judge = api_judge(proxy.base_url, concurrency=1, timeout=1.0, max_retries=4)
        result = judge_cell(cell, judge, references, lc_files, progress=False)
        assert len(proxy.posts("/chat/completions")) == 3 + 3  # each fault cost one retry
    assert result["n_failed"] == 0 and len(server.completions()) == 3
    with FaultProxy(server.base_url) as proxy:  # a refusal the client does not retry: the line does not claim retries
        proxy.fail(400)
        other = tmp_path / "other"
        other_cell, _ = finished_cell(other, 3)
        with pytest.raises(UsageError) as err:
            judge_cell(other_cell, api_judge(proxy.base_url, concurrency=1, max_retries=4), references, lc_files)
        assert len(proxy.posts("/chat/completions")) == 1
    assert f"{proxy.base_url} answered 400 (" in str(err.value) and "retries" not in str(err.value)


def test_a_dead_server_is_one_line_and_every_finished_verdict_is_kept(server, tmp_path, lc_files):
    cell, references = finished_cell(tmp_path, 10)
    judge = api_judge(server.base_url, concurrency=1, max_retries=1)  # verdicts are saved every 4 rows
    server.drop_after = 5  # then it closes every connection unanswered
    with pytest.raises(UsageError) as err:
        judge_cell(cell, judge, references, lc_files, progress=False)
    message = str(err.value)
    assert "\n" not in message and f"{server.base_url} did not answer after 1 retries" in message
    assert "4 of 10 verdicts" in message and "run again to finish" in message
    assert len((cell / "judge-api" / "cache.jsonl").read_text().splitlines()) == 4
    assert not (cell / "judge-api" / "winrate.json").exists()
    server.drop_after = None
    asked = len(server.completions())
    result = judge_cell(cell, judge, references, lc_files, progress=False)
    assert len(server.completions()) - asked == 6 and result["n"] == 10 and result["n_failed"] == 0
    # nothing listening at all
    nobody = api_judge(f"http://127.0.0.1:{free_port()}/v1", name="gone", max_retries=0)
    with pytest.raises(UsageError, match=r"judge gone: .* did not answer after 0 retries \(APIConnectionError"):
        judge_cell(cell, nobody, references, lc_files, progress=False)
    assert files_holding(tmp_path, KEY) == []


def test_a_judge_still_rate_limited_after_its_retries_stops_the_run(server, tmp_path, lc_files):
    """A 429 that outlasts the client's retries stops the judge with one line, finished verdicts kept, as a dead
    server does; it is not recorded as a verdict the judge failed to give (alpaca_eval's decoder turns an error it
    takes for a rate limit into an empty answer)."""
    cell, references = finished_cell(tmp_path, 10)
    judge = api_judge(server.base_url, concurrency=1, max_retries=1)  # verdicts are saved every 4 rows
    server.rate_limit_after = 5
    with pytest.raises(UsageError) as err:
        judge_cell(cell, judge, references, lc_files, progress=False)
    message = str(err.value)
    assert "\n" not in message and f"{server.base_url} did not answer after 1 retries" in message
    assert "429" in message and "4 of 10 verdicts" in message and "run again to finish" in message
    assert not (cell / "judge-api" / "winrate.json").exists()
    server.rate_limit_after = None
    result = judge_cell(cell, judge, references, lc_files, progress=False)
    assert (result["n"], result["n_failed"]) == (10, 0)


def test_a_base_url_that_is_not_an_openai_api_is_one_line(tmp_path, lc_files, monkeypatch):
    """A web page where the chat completions should be (a web UI that answers every path, a login page)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cell, references = finished_cell(tmp_path, 2)
    with web_page() as url, pytest.raises(UsageError) as err:
        judge_cell(cell, api_judge(url), references, lc_files, progress=False)
    message = str(err.value)
    assert "\n" not in message and f"{url} did not answer with an OpenAI chat completion" in message
    assert "0 of 2 verdicts" in message


def test_a_local_reward_model_judges_through_the_same_path(chat_paths, tmp_path, lc_files, monkeypatch):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cell, references = finished_cell(tmp_path, 4)
    judge = make_judge("rm", {"kind": "reward_model", "path": str(chat_paths["reward"]), "batch_size": 3}, "cpu")
    judge.check()
    result = judge_cell(cell, judge, references, lc_files, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(chat_paths["reward"])
    model = AutoModelForSequenceClassification.from_pretrained(chat_paths["reward"]).eval()

    def reward(instruction: str, response: str) -> float:
        chat = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        with torch.inference_mode():
            return model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item()

    annotations = json.loads((cell / "judge-rm" / "annotations.json").read_text())
    for a in annotations:
        margin = reward(a["instruction"], a["output_2"]) - reward(a["instruction"], a["output_1"])
        assert a["preference"] == pytest.approx(1 + 1 / (1 + math.exp(-margin)), abs=1e-5)
    assert result["judge"]["kind"] == "reward_model" and result["judge"]["comparable_to_leaderboard"] is False
    assert result["length_controlled_winrate"] is not None and result["n"] == 4
    assert "not comparable with the leaderboard" in label(result["judge"])
    monkeypatch.setattr("harness.scorers.RewardModel.__call__", lambda *a: pytest.fail("scored again"))
    assert judge_cell(cell, judge, references, lc_files, progress=False) == result


def test_a_reward_model_reads_a_chat_template_that_writes_bos_with_one_bos(tmp_path, lc_files):
    """A chat template that writes BOS itself (Llama 3's, Skywork's): the reward model reads the conversation as
    apply_chat_template tokenises it, with that one BOS and not a second one the tokenizer would put in front."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.toy import CHAT_TEMPLATE, build_classifier, synthetic_corpus, train_sentencepiece_tokenizer

    vocab = train_sentencepiece_tokenizer(synthetic_corpus(500, seed=0), 400)  # adds BOS to what it encodes
    vocab.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    path = tmp_path / "reward-bos"
    reward_model = build_classifier(vocab, None, seed=7)
    with torch.no_grad():  # weights large enough that every token moves the reward
        for p in reward_model.parameters():
            p.normal_(0.0, 0.5)
    reward_model.save_pretrained(path)
    vocab.save_pretrained(path)
    cell, references = finished_cell(tmp_path, 3)
    judge = make_judge("rm", {"kind": "reward_model", "path": str(path), "batch_size": 1}, "cpu")  # unpadded
    judge_cell(cell, judge, references, lc_files, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def reward(instruction: str, response: str) -> float:
        chat = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
        assert ids.count(tokenizer.bos_token_id) == 1
        with torch.inference_mode():
            return model(input_ids=torch.tensor([ids])).logits[0, 0].item()

    for a in json.loads((cell / "judge-rm" / "annotations.json").read_text()):
        margin = reward(a["instruction"], a["output_2"]) - reward(a["instruction"], a["output_1"])
        assert a["preference"] == pytest.approx(1 + 1 / (1 + math.exp(-margin)), abs=1e-5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "gpt"}, "judges.j.kind must be one of openai, reward_model"),
        ({"kind": "openai"}, "judges.j.model is required"),
        ({"kind": "openai", "model": "m", "api_key_env": "sk-abc123"}, "must be the NAME of an environment variable"),
        ({"kind": "openai", "model": "m", "base_url": "localhost:8000"}, "must start with http:// or https://"),
        ({"kind": "openai", "model": "m", "annotator": "my_judge"}, "is not an alpaca_eval annotator config"),
        ({"kind": "openai", "model": "m", "annotator": "claude"}, "does not call an OpenAI"),
        ({"kind": "openai", "model": "m", "concurrency": 0}, "concurrency must be >= 1"),
        ({"kind": "openai", "model": "m", "timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"kind": "reward_model", "path": "./nowhere"}, "judges.j.path: directory './nowhere' does not exist"),
        ({"kind": "reward_model", "path": "x/y", "batch_size": 0}, "batch_size must be >= 1"),
        ({"kind": "reward_model", "path": "x/y", "template": "{prompt}"}, "needs both {prompt} and {response}"),
    ],
)
def test_judge_config_mistakes_are_one_line(raw, message):
    with pytest.raises(UsageError) as err:
        make_judge("j", raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_key_and_a_language_model_as_judge_are_refused_before_any_request(chat_paths, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UsageError, match=f"environment variable {KEY_ENV}, which is not set; export {KEY_ENV}="):
        api_judge("http://127.0.0.1:1/v1").check()
    judge = make_judge("lm", {"kind": "reward_model", "path": str(chat_paths["strong"])}, "cpu")
    with pytest.raises(UsageError, match=r"judge lm: reward model .* is a language model"):
        judge.check()


def judged_study(chat_paths, tmp_path, base_url: str, lc_files: LCFiles) -> Path:
    """A small alpacaeval study on the local chat models, judged by the scripted server and the local reward model."""
    words = ("apple", "pear", "plum", "fig")
    rows = [
        {"instruction": f"Say {w} twice.", "output": f"{w} {w}.", "generator": "ref", "dataset": "d"} for w in words
    ]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    raw = {
        "study": "ae",
        "out": str(tmp_path / "runs"),
        "limit": 3,
        "batch_size": 2,
        "device": "cpu",
        "dtype": "float32",
        "models": {name: {"path": str(chat_paths[name]), "chat": True} for name in ("strong", "tuned", "untuned")},
        "guides": {"g": {"tuned": "tuned", "untuned": "untuned"}},
        "judges": {
            "api": {"kind": "openai", "model": "judge-model", "base_url": base_url, "api_key_env": KEY_ENV},
            "rm": {"kind": "reward_model", "path": str(chat_paths["reward"])},
        },
        "tasks": {
            "ae": {
                "task": "alpacaeval",
                "data": str(tmp_path / "eval.json"),
                "strong": ["strong"],
                "guide": "g",
                "methods": ["plain", {"bon": {"n": 2}}],
                "judges": ["api", "rm"],
                "df_gamed": lc_files.df_gamed,
                "instruction_difficulty": lc_files.instruction_difficulty,
                "sample": {"max_new_tokens": 6},
            }
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def test_a_study_generates_then_judges_each_cell_and_resumes(server, chat_paths, tmp_path, lc_files, capsys):
    config = judged_study(chat_paths, tmp_path, server.base_url, lc_files)
    code, out, err = w2s(capsys, "run", str(config), "--dry-run")
    assert code == 0, err
    assert "judge api (judge-model), not comparable with the leaderboard" in out and "judge rm (" in out
    code, out, err = w2s(capsys, "run", str(config), "--no-progress")
    assert code == 0, err
    assert out.strip().endswith(f"next: w2s leaderboard {tmp_path / 'runs'}")
    cells = sorted(p.parent for p in (tmp_path / "runs").rglob("model_outputs.json"))
    assert [c.relative_to(tmp_path / "runs").as_posix() for c in cells] == [
        "ae/strong/bon-N2/seed-0",
        "ae/strong/plain/seed-0",
    ]
    for cell in cells:
        outputs = json.loads((cell / "model_outputs.json").read_text())
        for judge in ("api", "rm"):
            result = json.loads((cell / f"judge-{judge}" / "winrate.json").read_text())
            assert result["n"] == 3 and result["n_failed"] == 0 and result["judge"]["name"] == judge
            assert result["win_rate"] is not None and result["length_controlled_winrate"] is not None
            annotations = json.loads((cell / f"judge-{judge}" / "annotations.json").read_text())
            assert [a["output_2"] for a in annotations] == [o["output"] for o in outputs]
    assert len(server.completions()) == 6
    samples = {c: (c / "samples.jsonl").read_bytes() for c in cells}
    code, _, err = w2s(capsys, "run", str(config), "--no-progress")  # resumed: nothing to decode or ask
    assert code == 0, err
    assert len(server.completions()) == 6 and all((c / "samples.jsonl").read_bytes() == s for c, s in samples.items())
    assert files_holding(tmp_path, KEY) == []
    code, out, err = w2s(capsys, "leaderboard", str(tmp_path / "runs"))
    assert code == 0, err
    placed = [line for line in out.splitlines() if line.startswith("rank ")]
    assert len(placed) == 4 and all("not comparable with the leaderboard" in line for line in placed)
    assert any("runs/ae/strong/plain/seed-0 [api]" in line and "judge api (judge-model)" in line for line in placed)
    assert (tmp_path / "runs" / "leaderboard" / "leaderboard.png").exists()
    # a judge that is not there, in a real process (no test logging handlers): one line, everything else kept
    gone = f"judges.api.base_url=http://127.0.0.1:{free_port()}/v1"
    argv = [sys.executable, "-m", "harness.cli", "run", str(config), gone, "judges.api.max_retries=0", "--no-progress"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "did not answer after 0 retries" in done.stderr and "run again to finish" in done.stderr
    assert all((c / "judge-rm" / "winrate.json").exists() for c in cells)
    assert all((c / "samples.jsonl").read_bytes() == s for c, s in samples.items())
