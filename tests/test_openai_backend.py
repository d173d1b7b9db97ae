"""Black-box search: a strong model behind an OpenAI-compatible server (`w2s serve` on 127.0.0.1, started here)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import study_dict, w2s
from loopback import FaultProxy, ServedModel, web_page

from harness.backends.openai_api import CompletionsModel, request_seed
from harness.methods import make_method
from harness.store import read_samples
from harness.types import APIModelSpec, Request, SampleConfig, Template

KEY_ENV = "W2S_TEST_API_KEY"
KEY = "sk-test-never-written-anywhere"


@pytest.fixture(scope="module")
def served(zoo):
    """The strong model that ends often (finished hypotheses happen), served with a required key."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        with ServedModel(zoo.paths["strong_ending"], api_key_env=KEY_ENV) as server:
            yield server


@pytest.fixture
def proxy(served):
    with FaultProxy(served.base_url, hang_seconds=3) as p:
        yield p


def model(base_url: str, **kwargs) -> CompletionsModel:
    return CompletionsModel(APIModelSpec(base_url, "strong", KEY_ENV, **kwargs))


def prompts(n: int) -> list[Request]:
    texts = ["The film was", "I really love this movie because", "Bad", "Sometimes the music", "Why"]
    return [Request(f"p{i}", texts[i], seed=100 + i) for i in range(n)]


def test_black_box_cbs_respects_w_k_l_and_accounts_requests_and_tokens(zoo, proxy, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    w, k, length, budget = 2, 3, 4, 10
    cbs = make_method("cbs", width=w, successors=k, chunk_length=length)
    sample = SampleConfig(max_new_tokens=budget, temperature=0.9, top_k=0)
    requests = prompts(3)
    outputs = cbs.decode(model(proxy.base_url), requests, sample, guide=zoo.guide_other_vocab)
    posts = proxy.posts()
    tokenizer = zoo.strong.tokenizer
    # the first chunk asks W*K continuations of each prompt; later ones K of each kept hypothesis, L tokens or the rest
    by_prompt = {r.id: [b for b in posts if b["prompt"].startswith(r.prompt)] for r in requests}
    for r, o in zip(requests, outputs, strict=True):
        mine = by_prompt[r.id]
        assert mine[0]["n"] == w * k and mine[0]["prompt"] == r.prompt
        assert mine[0]["seed"] == request_seed(r.seed, 0, 0)
        assert all(b["n"] == k for b in mine[1:])
        assert {b["max_tokens"] for b in mine} <= {length, budget - 2 * length}
        for chunk in range(1, 3):  # at most W requests per chunk, each with its own seed
            seeds = {request_seed(r.seed, chunk, h) for h in range(w)}
            assert sum(b["seed"] in seeds for b in mine) <= w
        assert all(len(scores) <= w for scores in o.trace) and 1 <= len(o.trace) <= 3
        assert o.compute.requests == len(mine)  # no retries here: one request each
        # billed: each request's prompt tokens plus at most n * max_tokens completion tokens
        prompt_tokens = sum(len(tokenizer(b["prompt"])["input_ids"]) for b in mine)
        assert prompt_tokens < o.compute.billed_tokens <= prompt_tokens + sum(b["n"] * b["max_tokens"] for b in mine)
        assert o.compute.strong_tokens == o.compute.billed_tokens and o.compute.guide_tokens > 0
        assert o.tokens == [] and o.finish_reason in ("eos", "length") and o.compute.seconds > 0
    assert len(posts) == sum(o.compute.requests for o in outputs)
    # the guide's reward of the returned text is what the search ranked by
    finished = [o.finish_reason != "length" for o in outputs]
    rescored = zoo.guide_other_vocab.score_text([r.prompt for r in requests], [o.text for o in outputs], finished)
    assert rescored == pytest.approx([o.score for o in outputs], abs=1e-4)


def test_results_do_not_depend_on_batching_or_concurrency(zoo, served, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cbs = make_method("cbs", width=2, successors=2, chunk_length=3)
    sample = SampleConfig(max_new_tokens=8, stop=("!",))
    together = cbs.decode(model(served.base_url, concurrency=8), prompts(4), sample, guide=zoo.guide)
    alone = [cbs.decode(model(served.base_url, concurrency=1), [r], sample, guide=zoo.guide)[0] for r in prompts(4)]
    assert [(o.text, o.finish_reason) for o in together] == [(o.text, o.finish_reason) for o in alone]
    assert [o.score for o in together] == pytest.approx([o.score for o in alone], abs=1e-4)
    assert len({o.text for o in together}) > 1


@pytest.mark.parametrize(("method", "params"), [("plain", {}), ("bon", {"n": 4})])
def test_plain_sampling_and_best_of_n(zoo, proxy, monkeypatch, method, params):
    monkeypatch.setenv(KEY_ENV, KEY)
    sample = SampleConfig(max_new_tokens=6)
    outputs = make_method(method, **params).decode(model(proxy.base_url), prompts(2), sample, guide=zoo.guide)
    posts = proxy.posts()
    assert [b["n"] for b in posts] == [params.get("n", 1)] * 2 and {b["max_tokens"] for b in posts} == {6}
    assert all(o.text and o.compute.requests == 1 and o.compute.billed_tokens > 0 for o in outputs)


def test_rate_limits_server_errors_and_timeouts_are_retried(zoo, proxy, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    bon = make_method("bon", n=2)
    sample = SampleConfig(max_new_tokens=4)
    clean = bon.decode(model(proxy.base_url), prompts(1), sample, guide=zoo.guide)[0]
    proxy.requests.clear()
    proxy.fail(429, 500, "timeout")
    retried = bon.decode(model(proxy.base_url, timeout=1.5, max_retries=3), prompts(1), sample, guide=zoo.guide)[0]
    assert len(proxy.posts()) == 4 and retried.compute.requests == 4  # three faults, then the answer
    assert (retried.text, retried.score) == (clean.text, clean.score)  # the same seed: the same answer
    proxy.fail(500, 500, 500)
    with pytest.raises(ValueError, match=r"answered 500 \(injected 500\) after 2 retries"):
        bon.decode(model(proxy.base_url, max_retries=2), prompts(1), sample, guide=zoo.guide)
    proxy.requests.clear()
    proxy.fail(400)  # a refusal the client does not retry: the line does not claim retries
    with pytest.raises(ValueError, match=r"answered 400 \(injected 400\); fix what it says"):
        bon.decode(model(proxy.base_url, max_retries=2), prompts(1), sample, guide=zoo.guide)
    assert len(proxy.posts()) == 1


@pytest.fixture
def api_study(zoo, gold_paths, data_dir, served, monkeypatch):
    """A small study whose strong model is the served one (CBS and best-of-N over both kinds of guide)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    config = study_dict(zoo, gold_paths, data_dir) | {"seeds": [0], "limit": 5, "batch_size": 2}
    del config["tasks"]["tldr"]
    config["tasks"]["imdb"].pop("tuned")
    config["models"]["strong"] = {"backend": "openai", "base_url": served.base_url, "model": "strong"}
    config["models"]["strong"] |= {"api_key_env": KEY_ENV, "max_retries": 1, "timeout": 20}
    config["methods"] = [{"cbs": {"width": 2, "successors": 2, "chunk_length": 2}}, {"bon": {"n": 2}}]
    path = data_dir / "api.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def test_a_study_runs_against_the_server_and_never_writes_the_key(api_study, capsys):
    path, _ = api_study
    code, out, err = w2s(capsys, "run", str(path), "--no-progress")
    assert code == 0, err
    runs = path.parent / "runs"
    for cell in ("imdb/strong/cbs-W2-K2-L2/seed-0", "imdb/strong/bon-N2/seed-0"):
        samples = read_samples(runs / cell)
        assert len(samples) == 5 and all(s["compute"]["requests"] >= 1 for s in samples)
        assert all(s["compute"]["billed_tokens"] > 0 and "gold" in s["scores"] for s in samples)
        summary = json.loads((runs / cell / "summary.json").read_text())
        assert summary["compute"]["requests"]["mean"] >= 1
    manifest = json.loads((runs / "imdb/strong/bon-N2/seed-0/manifest.json").read_text())
    assert manifest["identity"]["strong"] == {"backend": "openai", "model": "strong"}
    assert manifest["config"]["models"]["strong"]["api_key_env"] == KEY_ENV
    for file in runs.rglob("*"):  # the key is in no file the run wrote
        assert not file.is_file() or KEY.encode() not in file.read_bytes(), file
    assert KEY not in out + err


def test_a_server_killed_mid_run_is_one_line_and_a_rerun_resumes_exactly(api_study, served, capsys, monkeypatch):
    """The server dies after the first batch is written: one line; restarted, the rerun finishes every sample once,
    and the samples are those of a run that was never interrupted."""
    path, config = api_study
    clean = copy.deepcopy(config) | {"out": str(path.parent / "clean")}
    (path.parent / "clean.yaml").write_text(yaml.safe_dump(clean))
    assert w2s(capsys, "run", str(path.parent / "clean.yaml"), "--no-progress")[0] == 0

    from harness.store import SampleLog

    append = SampleLog.append

    def append_then_die(self, records):
        append(self, records)
        served.kill()

    monkeypatch.setattr(SampleLog, "append", append_then_die)
    code, _, err = w2s(capsys, "run", str(path), "--no-progress")
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot reach the server at {served.base_url}" in err and "finished samples are kept" in err
    cell = path.parent / "runs/imdb/strong/cbs-W2-K2-L2/seed-0"
    assert len(read_samples(cell)) == 2  # the first batch
    monkeypatch.setattr(SampleLog, "append", append)
    served.start()
    code, _, err = w2s(capsys, "run", str(path), "--no-progress")
    assert code == 0, err
    for method in ("cbs-W2-K2-L2", "bon-N2"):
        resumed = read_samples(path.parent / f"runs/imdb/strong/{method}/seed-0")
        reference = read_samples(path.parent / f"clean/imdb/strong/{method}/seed-0")
        assert len(resumed) == len({s["id"] for s in resumed}) == 5  # each sample exactly once
        assert [(s["response"], s["scores"]) for s in resumed] == [(s["response"], s["scores"]) for s in reference]


def test_urial_sends_its_whole_in_context_prompt(zoo, proxy, monkeypatch):
    """URIAL over the API asks with its whole in-context prompt (preamble, examples, instruction), as locally."""
    from baselines.urial import PREAMBLE

    monkeypatch.setenv(KEY_ENV, KEY)
    urial = make_method("urial", examples=0)  # the preamble alone: the served model's context is 1,024 tokens
    request = prompts(1)[0]
    urial.decode(model(proxy.base_url), [request], SampleConfig(max_new_tokens=4), template=Template())
    [body] = proxy.posts()
    template = urial.prompt(Template())
    assert body["prompt"] == template.render(zoo.strong.tokenizer, request.prompt)
    assert body["prompt"].startswith(PREAMBLE) and body["prompt"].endswith(f"{request.prompt}\n\n### Assistant:\n")


def test_an_eos_is_recorded_as_eos_while_stop_strings_are_set(zoo, proxy, monkeypatch):
    """A server that reports `stop_reason` (vLLM, w2s serve) says null for an EOS: that is an EOS, not a stop string."""
    monkeypatch.setenv(KEY_ENV, KEY)
    sample = SampleConfig(max_new_tokens=12, stop=("never in the text",))
    outputs = make_method("bon", n=2).decode(model(proxy.base_url), prompts(5), sample, guide=zoo.guide)
    assert all(o.finish_reason in ("eos", "length") and o.stop == "" for o in outputs), outputs
    assert any(o.finish_reason == "eos" for o in outputs)  # the served model ends often


def test_a_stop_string_across_two_chunks_ends_the_response(zoo, proxy, monkeypatch):
    """The server sees only the chunk it writes, so a stop string split between two chunks is found here: the
    response ends before it, as it does when the model runs locally."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cbs = make_method("cbs", width=1, successors=1, chunk_length=1)  # one token per request
    sample = SampleConfig(max_new_tokens=16)
    free = cbs.decode(model(proxy.base_url), prompts(5), sample, guide=zoo.guide)
    # a stop string of two characters that first occurs across a chunk boundary (each request's prompt is the last
    # one's plus the chunk it brought)
    found = []
    for r, o in zip(prompts(5), free, strict=True):
        sofar = [b["prompt"][len(r.prompt) :] for b in proxy.posts() if b["prompt"].startswith(r.prompt)]
        for end in sofar[1:]:  # a boundary at len(end)
            stop = o.text[len(end) - 1 : len(end) + 1]
            if len(stop) == 2 and stop.isascii() and stop.isprintable() and o.text.find(stop) == len(end) - 1:
                found.append((r, o.text[: len(end) - 1], stop))
                break
    assert found, [o.text for o in free]
    request, before, stop = found[0]
    [o] = cbs.decode(model(proxy.base_url), [request], SampleConfig(max_new_tokens=16, stop=(stop,)), guide=zoo.guide)
    assert (o.text, o.finish_reason, o.stop) == (before, "stop", stop)


def test_a_base_url_that_is_not_an_openai_api_is_one_line_before_any_work():
    """A web page where the model list should be (a web UI that answers every path, a login page)."""
    with web_page() as url, pytest.raises(ValueError) as err:
        CompletionsModel(APIModelSpec(url, "strong")).check()
    message = str(err.value)
    assert "\n" not in message and f"the server at {url} did not answer /models with a model list" in message
