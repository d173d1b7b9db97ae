"""Bad arguments give one-line errors that name the problem; the CLI exits with code 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import w2s

from harness.errors import UsageError
from harness.methods import make_method
from harness.types import Request, SampleConfig, Template


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cbs", {"width": 0}, "width (W) must be an integer >= 1"),
        ("cbs", {"successors": 0}, "successors (K) must be an integer >= 1"),
        ("cbs", {"chunk_length": 0}, "chunk_length (L) must be an integer >= 1"),
        ("cbs", {"width": "4"}, "width (W) must be an integer >= 1, got '4'"),
        ("cbs", {"width": 2.5}, "width (W) must be an integer"),
        ("bon", {"n": -1}, "bon n must be an integer >= 1"),
        ("eft", {"beta": -1}, "eft beta must be a number >= 0"),
        ("beam", {}, "unknown method 'beam'; choose one of: plain, bon, cbs, eft, tuned, guide"),
        ("cbs", {"W": 4}, "method 'cbs' has no parameter W; its parameters: width, successors, chunk_length"),
    ],
)
def test_bad_method_arguments(name, params, message):
    with pytest.raises(UsageError) as err:
        make_method(name, **params)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cbs", "bon", "eft"])
def test_guided_methods_without_a_guide(zoo, requests, name):
    with pytest.raises(UsageError, match=f"method '{name}' needs a guide"):
        make_method(name).decode(zoo.strong, requests, SampleConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": 0}, "temperature must be > 0"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"stop": ("",)}, "stop strings must be non-empty"),
    ],
)
def test_bad_sampling_settings(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SampleConfig(**kwargs)


def test_template_needs_a_prompt_placeholder():
    with pytest.raises(UsageError, match=r"no \{prompt\} placeholder"):
        Template("Review:")


def test_prompt_longer_than_the_context_is_refused(zoo):
    long = Request("x", "word " * 2000)
    with pytest.raises(UsageError, match="exceeds the 1024-token context"):
        make_method("plain").decode(zoo.strong, [long], SampleConfig())


def test_a_response_that_would_overrun_the_guides_context_in_its_own_tokens_is_refused(zoo, requests):
    """A guide tokenizing by bytes needs more tokens than the strong model sampled: counted in its own tokens, EOS
    included, the overrun is refused before the guide reads a position it does not have."""
    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.toy import build_gpt2, synthetic_corpus, train_tokenizer

    tokenizer = train_tokenizer(synthetic_corpus(200), 260)  # hardly more than the 256 bytes
    lm = HFModel(build_gpt2(tokenizer, 1, 32, n_positions=48), tokenizer)
    sample = SampleConfig(max_new_tokens=30)
    with pytest.raises(UsageError) as err:
        make_method("bon", n=2).decode(zoo.strong, requests[:1], sample, guide=Guide(lm, lm))
    assert "would read" in str(err.value) and "more than its 48-token context" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--strong", "x", "--method", "beam", "--prompt", "hi"], "unknown method 'beam'"),
        (["generate", "--strong", "x", "--method", "cbs", "--set", "width=0", "--prompt", "hi"], "width (W)"),
        (["generate", "--strong", "x", "--method", "cbs", "--prompt", "hi"], "needs --tuned and --untuned"),
        (["generate", "--strong", "/no/such/dir", "--prompt", "hi"], "model directory '/no/such/dir' does not exist"),
        (["generate", "--strong", "x", "--set", "width", "--prompt", "hi"], "expected KEY=VALUE"),
        (["generate", "--prompt", "hi"], "required: --strong"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_input_in_one_line_with_exit_code_2(capsys, args, message):
    code, _, err = w2s(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_cli_error_in_a_real_process_has_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "generate", "--strong", "x", "--method", "beam", "--prompt", "hi"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (result.returncode, result.stderr) == (
        2,
        "w2s: error: unknown method 'beam'; choose one of: plain, bon, cbs, eft, tuned, guide, urial\n",
    )


def test_cli_help_does_not_import_torch():
    code = "import sys, harness.cli; harness.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_generate_prints_json_lines(zoo, capsys):
    paths = zoo.paths
    code, out, err = w2s(
        capsys,
        "generate", "--strong", str(paths["strong"]), "--tuned", str(paths["tuned"]), "--untuned",
        str(paths["untuned"]), "--method", "cbs", "--set", "width=2", "--set", "successors=2", "--set",
        "chunk_length=3", "--prompt", "The film was", "--prompt", "Bad", "--max-new-tokens", "9", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["0", "1"]
    assert all(r["method"] == "cbs(W=2,K=2,L=3)" and len(r["tokens"]) == 9 and len(r["trace"]) == 3 for r in rows)
