"""Judges: pairwise verdicts of a response against the reference, as alpaca_eval annotations.

A judge takes rows {instruction, output_1 (the reference), output_2 (the response)} and gives each a preference in
[1, 2] (2: the response is preferred), or None when it gave no verdict. Two kinds:

- `openai`: alpaca_eval's own annotator (by default `weighted_alpaca_eval_gpt4_turbo`: its prompt, its random order
  of the two outputs, its logprob parser) against any OpenAI-compatible endpoint (base URL, model name, and the NAME of
  the environment variable holding the key). The key is read when the judge runs and handed to the openai client
  only, hidden behind a redacted repr; it is never written anywhere. The openai client retries rate limits, server
  errors and timeouts with exponential backoff (`max_retries`); what still fails stops the judge with one line.
- `reward_model`: any Hugging Face sequence-classification reward model scores the response and the reference; the
  preference is 1 + P(response beats reference) under Bradley-Terry, sigmoid(r_response - r_reference). Its win
  rates come out of the same code path but are NOT comparable with the AlpacaEval leaderboard.

A judge's `identity` names everything its verdicts depend on (never the key): annotations are cached by it, so
another judge, or the same name pointing at another model or server, never reuses them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.configs import build, option
from harness.errors import UsageError, require
from harness.identity import fingerprint
from harness.types import DTYPE_NAMES, ModelSpec, local_dir

OPENAI_BASE_URL = "https://api.openai.com/v1"
LEADERBOARD_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
LEADERBOARD_MODEL = "gpt-4-1106-preview"  # what alpaca_eval's annotator config names as gpt-4-turbo


class JudgeUnavailable(Exception):
    """The judge could not answer (server down, retries exhausted, key refused): stop, keep what is done."""


class Judge(Protocol):
    name: str
    chunk_size: int  # rows annotated between two saves of the cache

    @property
    def identity(self) -> dict:
        """Everything the verdicts depend on, without secrets; includes `comparable_to_leaderboard`."""
        ...

    def check(self) -> None:
        """What can be checked before anything loads or any request is sent."""
        ...

    def annotate(self, rows: Sequence[dict], log: Path) -> list[dict]:
        """One annotation per row, in order: the row plus `preference` (None: no verdict) and the judge's extras."""
        ...


@dataclass
class OpenAIJudgeConfig:
    model: str = option(help="the judge model's name at the endpoint (the leaderboard's: gpt-4-1106-preview)")
    kind: str = option("openai", "openai: alpaca_eval's annotator against an OpenAI-compatible endpoint")
    base_url: str = option(OPENAI_BASE_URL, "the endpoint, e.g. http://localhost:8000/v1 for `vllm serve`")
    api_key_env: str = option("OPENAI_API_KEY", "the NAME of the environment variable holding the key (never the key)")
    annotator: str = option(LEADERBOARD_ANNOTATOR, "an alpaca_eval annotator config that calls openai_completions")
    max_retries: int = option(6, "retries of a request on rate limits, server errors and timeouts (with backoff)")
    timeout: float = option(120.0, "seconds before a request is abandoned (and retried)")
    concurrency: int = option(4, "requests in flight at once")


@dataclass
class RewardModelJudgeConfig:
    path: str = option(help="hub id or local directory of the reward model")
    kind: str = option("reward_model", "reward_model: a local sequence-classification reward model")
    revision: str | None = option(None, "hub revision")
    device: str | None = option(None, "cpu, cuda, cuda:1; default: the study's device")
    dtype: str = option("float32", "auto, float32, bfloat16 or float16")
    batch_size: int = option(8, "texts scored together")
    template: str = option(
        "{prompt}\n\n{response}", "input text when the tokenizer has no chat template ({prompt}, {response})"
    )
    positive_label: str = option("POSITIVE", "for a two-label classifier: the label whose logit is the reward")
    negative_label: str = option("NEGATIVE", "for a two-label classifier: the label subtracted")


KINDS = {"openai": OpenAIJudgeConfig, "reward_model": RewardModelJudgeConfig}


def make_judge(name: str, raw: Any, device: str | None = None) -> Judge:
    """A judge from its config section `judges.<name>` (checked, nothing loaded)."""
    where = f"judges.{name}"
    require(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) is not None,
        f"judge name {name!r} must be letters, digits, '_', '.' or '-' (it names the directory judge-{name})",
    )
    require(isinstance(raw, dict), f"{where} must be a mapping with a `kind` ({', '.join(KINDS)})")
    kind = raw.get("kind")
    require(kind in KINDS, f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    config = build(KINDS[kind], raw, where)
    if isinstance(config, OpenAIJudgeConfig):
        return OpenAIJudge(name, config)
    return RewardModelJudge(name, config, device)


class Secret(str):
    """An API key: a string to the HTTP client, '***' to anything that prints or logs it."""

    def __repr__(self) -> str:
        return "'***'"


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """While inside, log records (alpaca_eval's and the HTTP client's, INFO and up) and the package's progress bars
    go to `path`, not the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed below, after the handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stderr(stream):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        stream.close()


class OpenAIJudge:
    """alpaca_eval's annotator (prompt, order randomisation, parsing) with its requests sent to the configured
    endpoint; the package's own caching is off (the run directory keeps the annotations, see harness.judging)."""

    def __init__(self, name: str, config: OpenAIJudgeConfig):
        self.name, self.config = name, config
        c = config
        require(c.model.strip() != "", f"judges.{name}.model is empty; name the judge model")
        require(
            c.base_url.startswith(("http://", "https://")),
            f"judges.{name}.base_url {c.base_url!r} must start with http:// or https:// (e.g. http://host:8000/v1)",
        )
        require(
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c.api_key_env) is not None,
            f"judges.{name}.api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
            "never the key itself",
        )
        require(c.max_retries >= 0, f"judges.{name}.max_retries must be >= 0, got {c.max_retries}")
        require(0 < c.timeout < math.inf, f"judges.{name}.timeout must be a number of seconds > 0, got {c.timeout}")
        require(c.concurrency >= 1, f"judges.{name}.concurrency must be >= 1, got {c.concurrency}")
        self.chunk_size = 4 * c.concurrency
        self._annotator_config()  # an unknown annotator is refused here

    @property
    def identity(self) -> dict:
        c = self.config
        comparable = (
            c.annotator == LEADERBOARD_ANNOTATOR
            and c.model == LEADERBOARD_MODEL
            and c.base_url.rstrip("/") == OPENAI_BASE_URL
        )
        return {
            "name": self.name,
            "kind": "openai",
            "annotator": c.annotator,
            "model": c.model,
            "base_url": c.base_url.rstrip("/"),
            "comparable_to_leaderboard": comparable,
        }

    def _annotator_config(self) -> dict:
        """The alpaca_eval annotator's config (it must call an OpenAI-compatible API)."""
        from harness.alpaca import import_alpaca_eval

        constants = import_alpaca_eval("alpaca_eval.constants")
        path = Path(constants.EVALUATORS_CONFIG_DIR) / self.config.annotator / "configs.yaml"
        require(
            re.fullmatch(r"[A-Za-z0-9_.-]+", self.config.annotator) is not None and path.is_file(),
            f"judges.{self.name}.annotator {self.config.annotator!r} is not an alpaca_eval annotator config; "
            f"use {LEADERBOARD_ANNOTATOR}",
        )
        import yaml

        config = yaml.safe_load(path.read_text(encoding="utf-8"))[self.config.annotator]
        require(
            config.get("fn_completions") == "openai_completions",
            f"judges.{self.name}.annotator {self.config.annotator!r} does not call an OpenAI-compatible API; "
            f"use {LEADERBOARD_ANNOTATOR}",
        )
        return config

    def check(self) -> None:
        require(
            bool(os.environ.get(self.config.api_key_env)),
            f"judge {self.name} reads its API key from the environment variable {self.config.api_key_env}, which is "
            f"not set; export {self.config.api_key_env}=<key> (for a server without keys, any text will do)",
        )

    def _annotator(self):
        """alpaca_eval's PairwiseAnnotator for this judge, its requests pointed at the configured endpoint."""
        from harness.alpaca import import_alpaca_eval

        self.check()
        module = import_alpaca_eval("alpaca_eval.annotators")
        c = self.config
        annotator = module.PairwiseAnnotator(
            annotators_config=c.annotator, caching_path=None, is_avoid_reannotations=False
        )
        for single in annotator.annotators.values():
            single.completions_kwargs = {
                **single.completions_kwargs,
                "model_name": c.model,
                "requires_chatml": True,  # the annotator's prompt is a chat, whatever the model is called
                "num_procs": c.concurrency,
                "openai_api_base": c.base_url,
                "openai_api_keys": [Secret(os.environ[c.api_key_env])],
                "openai_organization_ids": None,
                "client_config_path": os.devnull,  # not a file: no client config from the package's directory
                "client_kwargs": {"max_retries": c.max_retries, "timeout": c.timeout},
                "n_retries": 1,  # the openai client retries with backoff; the package would retry again
                "sleep_time": 0,  # nor sleep before giving up: the client has already backed off
                "price_per_token": 0.0,
            }
        return annotator

    def annotate(self, rows: Sequence[dict], log: Path) -> list[dict]:
        import openai

        swallowed = _Swallowed()
        with log_to(log), swallowed.watching():
            try:
                done = self._annotator()(
                    [{k: r[k] for k in ("instruction", "output_1", "output_2")} for r in rows], chunksize=None
                )
            except openai.APIError as err:
                raise JudgeUnavailable(_api_error(err, self.config)) from None
            except AttributeError as err:  # the client gives a page (not JSON) as a str, in which the package
                if not str(err).startswith("'str' object"):  # finds no choices
                    raise
                raise JudgeUnavailable(
                    f"{self.config.base_url} did not answer with an OpenAI chat completion (a web page?); fix the "
                    "judge's base_url (it usually ends in /v1)"
                ) from None
        if swallowed.gave_up:
            first = (swallowed.errors[-1:] or ["no answer"])[0].strip().splitlines()[0][:160]
            raise JudgeUnavailable(
                f"{self.config.base_url} did not answer after {self.config.max_retries} retries ({first})"
            )
        verdicts = {(d["instruction"], d["output_1"], d["output_2"]): d for d in done}
        out = []
        for row in rows:
            found = verdicts.get((row["instruction"], row["output_1"], row["output_2"]))
            preference = None if found is None else found.get("preference")
            extras = {} if found is None else {k: _plain(v) for k, v in found.items() if k.startswith("preference_")}
            out.append({**row, "annotator": self.config.annotator, "preference": _plain(preference), **extras})
        return out


class _Swallowed(logging.Handler):
    """The API errors alpaca_eval's decoder swallows: one it takes for a rate limit ("rate " in its text) that
    outlasts the client's retries becomes an empty answer, which would be recorded as a failed verdict where the
    judge must stop. The decoder logs "OpenAIError: <error>." for each error and "Max retries reached" when it gives
    up."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.gave_up = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("OpenAIError: "):
            self.errors.append(message.removeprefix("OpenAIError: "))
        self.gave_up |= message.startswith("Max retries reached")

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While inside, every log record (from any thread) passes through this handler."""
        logging.getLogger().addHandler(self)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(self)


def _api_error(err: Exception, config: OpenAIJudgeConfig) -> str:
    """One line on why the endpoint did not answer, and what to do."""
    status = getattr(err, "status_code", None)
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    if status in (401, 403):
        return f"{config.base_url} refused the key in {config.api_key_env} ({status}); export the right key"
    if status == 404:
        return f"{config.base_url} does not serve model {config.model!r} ({first}); fix the judge's model or base_url"
    if status is not None:
        from harness.backends.openai_api import client_retries

        if not client_retries(status):
            return f"{config.base_url} answered {status} ({first}); fix what it says (judge model, server settings)"
    how = f"status {status}" if status else type(err).__name__
    return f"{config.base_url} did not answer after {config.max_retries} retries ({how}: {first})"


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, NaN as None (strict JSON)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


class RewardModelJudge:
    """A local reward model as a judge: preference = 1 + sigmoid(r(response) - r(reference))."""

    def __init__(self, name: str, config: RewardModelJudgeConfig, device: str | None = None):
        from harness.scorers import RewardModel

        self.name, self.config = name, config
        c = config
        local = local_dir(c.path)
        require(local is None or local.is_dir(), f"judges.{name}.path: directory {c.path!r} does not exist")
        require(c.dtype in DTYPE_NAMES, f"judges.{name}.dtype must be one of {', '.join(DTYPE_NAMES)}, got {c.dtype!r}")
        require(c.batch_size >= 1, f"judges.{name}.batch_size must be >= 1, got {c.batch_size}")
        require(
            "{prompt}" in c.template and "{response}" in c.template,
            f"judges.{name}.template needs both {{prompt}} and {{response}}",
        )
        self.spec = ModelSpec(c.path, dtype=c.dtype, device=c.device or device, revision=c.revision)
        self.model = RewardModel(
            f"judge-{name}",
            self.spec,
            template="{prompt}",  # the text is built here: the chat template, or `template`
            positive=c.positive_label,
            negative=c.negative_label,
            batch_size=c.batch_size,
        )
        self.chunk_size = 16 * c.batch_size
        self._tokenizer = None

    @property
    def identity(self) -> dict:
        from harness.backends.hf import default_device
        from harness.scorers import torch_device_type

        c = self.config
        return {
            "name": self.name,
            "kind": "reward_model",
            "model": c.path,
            "revision": c.revision,
            "fingerprint": fingerprint(c.path),
            "dtype": c.dtype,
            "device": torch_device_type(self.spec.device or default_device()),  # numbers differ between kinds
            "template": c.template,
            "input": "the chat template's text with only the special tokens it writes, else template",
            "labels": [c.positive_label, c.negative_label],
            "comparable_to_leaderboard": False,
        }

    def check(self) -> None:
        try:
            self.model.check()
        except UsageError as err:
            raise UsageError(f"judge {self.name}: {str(err).replace('gold model', 'reward model')}") from None

    def text(self, instruction: str, response: str) -> str:
        """What the reward model reads: the conversation in its tokenizer's chat template, else `template`."""
        if self._tokenizer is None:
            from harness.preflight import inspect_model

            self._tokenizer = inspect_model(self.spec).tokenizer
            # a chat template writes the special tokens it wants (Llama 3's BOS): the tokenizer must not add them again
            self.model.special_tokens = not self._tokenizer.chat_template
        if self._tokenizer.chat_template:
            chat = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
            return self._tokenizer.apply_chat_template(chat, tokenize=False)
        return self.config.template.replace("{prompt}", instruction).replace("{response}", response)

    def annotate(self, rows: Sequence[dict], log: Path) -> list[dict]:
        from harness.scorers import Item

        items = [Item(self.text(r["instruction"], r[key]), "") for r in rows for key in ("output_1", "output_2")]
        rewards = self.model(items)
        out = []
        for i, row in enumerate(rows):
            reference, response = rewards[2 * i], rewards[2 * i + 1]
            preference = 1 + 1 / (1 + math.exp(reference - response)) if math.isfinite(response - reference) else None
            annotator = f"reward_model:{self.config.path}"
            out.append({**row, "annotator": annotator, "preference": preference, "rewards": [reference, response]})
        return out
