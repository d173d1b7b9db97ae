"""`w2s serve`: a local model behind an OpenAI-compatible API, sampled by the engine, on loopback."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from conftest import w2s
from loopback import FaultProxy, ServedModel, free_port
from transformers import AutoTokenizer

from harness.methods import make_method
from harness.types import Request, SampleConfig

KEY_ENV = "W2S_TEST_SERVE_KEY"
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"


@pytest.fixture(scope="module")
def server(zoo, tmp_path_factory, monkeypatch_module):
    """The strong model (it never ends early) with a chat template, served with a required key."""
    model = tmp_path_factory.mktemp("served") / "strong"
    shutil.copytree(zoo.paths["strong"], model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    monkeypatch_module.setenv(KEY_ENV, "sk-test-serve-key")
    with ServedModel(model, api_key_env=KEY_ENV) as served:
        yield served


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-serve-key", max_retries=0, timeout=60)


def test_a_seeded_completion_is_the_engines_plain_sample(zoo, client):
    """The served model samples as the engine does: same seed, same tokens as plain sampling in process."""
    sample = SampleConfig(max_new_tokens=12, temperature=0.7, top_k=50)
    for i, prompt in enumerate(["The film was", "Bad", "Sometimes the music"]):
        answer = client.completions.create(
            model="strong", prompt=prompt, max_tokens=12, temperature=0.7, seed=40 + i, extra_body={"top_k": 50}
        )
        engine = make_method("plain").decode(zoo.strong, [Request("x", prompt, seed=40 + i)], sample)[0]
        assert answer.choices[0].text == engine.text
        assert answer.choices[0].finish_reason == ("length" if engine.finish_reason == "length" else "stop")
        assert answer.usage.completion_tokens == len(engine.tokens)
        assert answer.usage.prompt_tokens == len(zoo.strong.tokenizer(prompt)["input_ids"])


def test_n_samples_seeds_and_concurrency(client):
    def ask(seed: int) -> list[str]:
        answer = client.completions.create(model="strong", prompt="I really", n=3, max_tokens=8, seed=seed)
        assert len(answer.choices) == 3 and [c.index for c in answer.choices] == [0, 1, 2]
        assert answer.usage.completion_tokens <= 24
        return [c.text for c in answer.choices]

    alone = [ask(s) for s in range(6)]
    with ThreadPoolExecutor(6) as pool:  # requests decoded together in one batch give the same answers
        together = list(pool.map(ask, range(6)))
    assert together == alone
    assert len({tuple(a) for a in alone}) > 1


def test_completion_logprobs_and_stop(client):
    ask = dict(model="strong", prompt="The film", max_tokens=10, seed=3, extra_body={"top_k": 5})
    answer = client.completions.create(**ask, logprobs=5)
    lp, text = answer.choices[0].logprobs, answer.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) > 3
    for logprob, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(top) <= 5 and logprob <= 0 and all(v <= 0 for v in top.values())
    chat = client.chat.completions.create(
        model="strong", messages=[{"role": "user", "content": "Hi"}], max_tokens=10, seed=3, logprobs=True,
        top_logprobs=5, extra_body={"top_k": 5},
    )  # fmt: skip
    for step in chat.choices[0].logprobs.content:  # top-k sampling: the chosen token is among the 5 likeliest
        assert any(step.logprob == pytest.approx(t.logprob) for t in step.top_logprobs)
    stop = text[len(text) // 2]  # a stop string cuts the text before it
    cut = client.completions.create(**ask, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"
    greedy = client.chat.completions.create(
        model="strong", messages=[{"role": "user", "content": "Hi"}], temperature=0, logprobs=True, top_logprobs=2
    )
    for step in greedy.choices[0].logprobs.content:  # temperature 0: always the likeliest token
        assert step.logprob == pytest.approx(step.top_logprobs[0].logprob)


def test_chat_completions_with_top_logprobs(client):
    answer = client.chat.completions.create(
        model="strong",
        messages=[{"role": "user", "content": "Which is better, A or B?"}],
        max_tokens=5,
        logprobs=True,
        top_logprobs=3,
        seed=1,
    )
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    content = choice.logprobs.content
    assert 0 < len(content) <= 5 and all(len(c.top_logprobs) == 3 for c in content)
    assert all(c.top_logprobs[0].logprob >= c.logprob for c in content)
    assert answer.usage.prompt_tokens > 5


def test_bad_requests_and_a_missing_key_are_refused(server, client):
    with pytest.raises(openai.BadRequestError, match="not served here"):
        client.completions.create(model="other", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="n: Input should be greater than or equal to 1"):
        client.completions.create(model="strong", prompt="x", max_tokens=2, n=0)
    with pytest.raises(openai.BadRequestError, match="exceeds the 1024-token context"):
        client.completions.create(model="strong", prompt="x", max_tokens=5000)
    anonymous = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert [m.id for m in client.models.list().data] == ["strong"]


def test_the_fault_proxy_injects_errors_that_the_client_retries(server):
    with FaultProxy(server.base_url, hang_seconds=3) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-test-serve-key", max_retries=3, timeout=1.5)
        proxy.fail(429, 500, "timeout")
        raw = client.completions.with_raw_response.create(model="strong", prompt="Hi", max_tokens=3, seed=0)
        assert raw.retries_taken == 3 and len(raw.parse().choices) == 1
        assert len(proxy.posts()) == 4
        proxy.fail(500, 500)
        with pytest.raises(openai.InternalServerError):
            client.with_options(max_retries=1).completions.create(model="strong", prompt="Hi", max_tokens=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "/no/such/model"], "model directory '/no/such/model' does not exist"),
        (["serve", "x", "--api-key-env", "W2S_NO_SUCH_VARIABLE"], "environment variable W2S_NO_SUCH_VARIABLE"),
        (["serve", "x", "--port", "0"], "--port must be in 1..65535"),
    ],
)
def test_serve_rejects_bad_input_in_one_line(capsys, args, message):
    code, _, err = w2s(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_serve_refuses_a_busy_port(capsys, server):
    code, _, err = w2s(capsys, "serve", "x", "--port", str(server.port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{server.port}" in err
    assert free_port() != server.port
