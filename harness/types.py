"""Plain data passed between the engine, the methods and the runner."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError, require

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Template:
    """How a raw prompt becomes model input: `text` with `{prompt}` filled in, then the chat template if `chat`."""

    text: str = "{prompt}"
    chat: bool = False
    system: str | None = None  # system message, chat templates only: None sends none, "" an empty one
    special_tokens: bool = True  # whether a prompt outside a chat template gets the tokenizer's special tokens (BOS)

    def __post_init__(self) -> None:
        require("{prompt}" in self.text, f"template {self.text!r} has no {{prompt}} placeholder; add one")

    @property
    def adds_special_tokens(self) -> bool:
        """Whether the tokenizer adds its special tokens (BOS) to the rendered text: not where a chat template wrote
        them, nor where `special_tokens` is off (the paper's code tokenises every prompt without them)."""
        return self.special_tokens and not self.chat

    def render(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
        body = self.text.replace("{prompt}", prompt)  # not str.format: prompts and templates may contain braces
        if not self.chat:
            return body
        require(
            tokenizer.chat_template is not None,
            f"model {tokenizer.name_or_path!r} has no chat template; give one in its config "
            "(models.<name>.chat_template: a Jinja string or a file) or set chat: false",
        )
        from jinja2 import TemplateError

        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        try:
            return tokenizer.apply_chat_template(
                [*system, {"role": "user", "content": body}], add_generation_prompt=True, tokenize=False
            )
        except TemplateError as err:  # a chat template is Jinja code the user or the checkpoint supplies
            raise UsageError(
                f"the chat template of model {tokenizer.name_or_path!r} fails on a prompt ({err}); fix it "
                "(models.<name>.chat_template) or set chat: false"
            ) from None

    def renderings(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> Iterator[str]:
        """The prompt's renderings, the preferred one first, each shorter than the one before: the first that fits
        the model's context is used. A plain template has one."""
        yield self.render(tokenizer, prompt)


@dataclass(frozen=True)
class FewShotTemplate(Template):
    """Plain text a base model continues: a preamble, in-context examples, then `text` with `{prompt}` filled in.

    The rule for a long prompt: examples are dropped from the end, one at a time, until the prompt and the response
    budget fit the model's context; a prompt that does not fit even with none is refused (`encode_prompt`)."""

    preamble: str = ""
    shots: tuple[str, ...] = ()  # each a rendered example, in the order the prompt shows them

    def __post_init__(self) -> None:
        super().__post_init__()
        require(not self.chat, "an in-context (few-shot) template is plain text; it cannot also use a chat template")
        object.__setattr__(self, "shots", tuple(self.shots))

    def render(self, tokenizer: PreTrainedTokenizerBase, prompt: str, shots: int | None = None) -> str:
        """The preamble, the first `shots` examples (default: all), then the prompt in `text`."""
        kept = self.shots[: len(self.shots) if shots is None else shots]
        return self.preamble + "".join(kept) + self.text.replace("{prompt}", prompt)

    def renderings(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> Iterator[str]:
        for shots in range(len(self.shots), -1, -1):
            yield self.render(tokenizer, prompt, shots)


def local_dir(path: str) -> Path | None:
    """The directory a model path names when it is local (it exists, or is written ./x, ../x, /x or ~/x); None for
    a hub id."""
    local = Path(path).expanduser()
    return local if path.startswith(("/", ".", "~")) or local.exists() else None


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and where it runs."""

    path: str  # hub id ("gpt2-large") or local directory
    dtype: str = "auto"  # "auto" (the checkpoint's), "float32", "bfloat16" or "float16"
    device: str | None = None  # "cpu", "cuda", "cuda:1"; default: cuda when available, else cpu
    device_map: str | None = None  # e.g. "auto" to shard a large model over all GPUs (replaces `device`)
    trust_remote_code: bool = False  # run code shipped with the checkpoint; off unless asked
    revision: str | None = None
    chat_template: str | None = None  # Jinja chat template replacing the tokenizer's own

    def __post_init__(self) -> None:
        require(self.dtype in DTYPE_NAMES, f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")


@dataclass(frozen=True)
class APIModelSpec:
    """A model behind an OpenAI-compatible completions endpoint (OpenAI, vLLM, SGLang, `w2s serve`). The key itself is
    never held here, only the name of the environment variable that holds it."""

    base_url: str  # e.g. https://api.openai.com/v1 or http://host:8000/v1
    model: str  # the model name the server knows
    api_key_env: str | None = None  # environment variable holding the API key; None: the server needs none
    concurrency: int = 8  # requests in flight at once
    timeout: float = 60.0  # seconds before a request is abandoned (and retried)
    max_retries: int = 5  # retries, with exponential backoff, on rate limits, server errors, timeouts, lost connections

    def __post_init__(self) -> None:
        require(self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency}")
        require(0 < self.timeout < math.inf, f"timeout must be a number of seconds > 0, got {self.timeout}")
        require(self.max_retries >= 0, f"max_retries must be >= 0, got {self.max_retries}")
        require(
            self.base_url.startswith(("http://", "https://")),
            f"base_url {self.base_url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)",
        )

    @property
    def path(self) -> str:
        """How plans and messages name it."""
        return f"{self.model} at {self.base_url}"


@dataclass(frozen=True)
class Request:
    """One prompt to decode. `prompt` is raw task text: the strong model and the guide each apply their own template.

    `seed` alone decides the prompt's random draws, so its output does not depend on which other prompts share a batch.
    """

    id: str
    prompt: str
    seed: int = 0


@dataclass(frozen=True)
class SampleConfig:
    """How the strong model samples: the settings every method shares."""

    max_new_tokens: int = 50
    temperature: float = 0.7
    top_k: int = 50  # 0 disables top-k filtering
    top_p: float = 1.0  # 1.0 disables nucleus filtering
    stop: tuple[str, ...] = ()  # a response ends at the first of these strings (which is cut from its text)

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        require(
            0 < self.temperature < math.inf,
            f"temperature must be > 0 and finite, got {self.temperature} (greedy decoding is not a sampling method)",
        )
        require(self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        require(all(self.stop), "stop strings must be non-empty")
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclass
class Compute:
    """What one output cost. Token counts are the positions a model actually read (prompt prefill included)."""

    strong_tokens: int = 0
    strong_forward_passes: int = 0
    guide_tokens: int = 0  # tuned and untuned together
    guide_forward_passes: int = 0
    seconds: float = 0.0  # wall time of the batched call, shared evenly among its prompts
    requests: int = 0  # requests sent to a model behind an API, retries included
    billed_tokens: int = 0  # tokens the API billed (its `usage`: prompt and completion tokens)

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class Output:
    """A decoded response and how it was found."""

    id: str
    text: str
    tokens: list[int]  # strong-model tokens of the response, an ending EOS included
    finish_reason: str  # "eos", "stop" or "length"
    stop: str = ""  # what the guide read past `text`: the stop string that ended it (and whitespace trimmed before)
    score: float | None = None  # guide implicit reward of the response, where the method computed it
    compute: Compute = field(default_factory=Compute)
    trace: list[list[float]] = field(default_factory=list)  # CBS: kept beams' scores at each chunk boundary

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
            "stop": self.stop,
            "score": self.score,
            "compute": self.compute.as_dict(),
            "trace": self.trace,
        }
