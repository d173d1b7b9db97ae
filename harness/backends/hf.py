"""Hugging Face causal LMs: loading by hub id or directory, prompt templates, and batches of rows in a KV cache."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import (
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

from harness import hub
from harness.errors import UsageError, require
from harness.preflight import DEVICE_MAP_STRATEGIES, check_placement
from harness.ranks import rank_device, rank_max_memory
from harness.types import DTYPE_NAMES, ModelSpec, Template, local_dir

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
assert set(DTYPES) == set(DTYPE_NAMES)
# Prompt tokens decoded ahead of a response so its text reads as it follows the prompt. Decoders act locally (a
# SentencePiece decoder drops the leading space of the first token only; bytes of one character span at most four
# tokens), so eight tokens of context give the text that decoding the whole prompt would give.
CONTEXT_TOKENS = 8


def common_prefix(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix of two sequences (token lists or strings)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


class HFModel:
    """A causal LM with its tokenizer, evaluation mode, inference only."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or model.name_or_path or type(model).__name__
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids: frozenset[int] = frozenset(eos)
        self.eos_id: int | None = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else (eos or [None])[0]
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.max_positions = context_length(model.config)

    @classmethod
    def load(cls, spec: ModelSpec) -> HFModel:
        """Load from the hub or a local directory; a failure becomes a one-line UsageError."""
        model, tokenizer = from_pretrained(spec, AutoModelForCausalLM)
        return cls(model, tokenizer, name=spec.path)

    @property
    def device(self) -> torch.device:
        """Where inputs go (the first device when the model is sharded)."""
        return self.model.device

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    def same_vocab(self, other: HFModel) -> bool:
        """True when token ids mean the same strings in both models, so ids can pass between them unchanged."""
        return self is other or self.vocab == other.vocab

    def encode_prompt(self, template: Template, prompt: str, new_tokens: int = 0) -> list[int]:
        """Token ids of a rendered prompt (see `encode_prompt`)."""
        return encode_prompt(self.tokenizer, self.max_positions, self.name, template, prompt, new_tokens)

    def decode_after(self, contexts: Sequence[list[int]], rows: Sequence[list[int]]) -> list[str]:
        """The text of each row of tokens as it reads after its context (the tokens before it), special tokens dropped.

        Decoding a response alone is not enough: a SentencePiece decoder (Llama-2, Mistral) drops its leading space.
        The text is what follows the context's text in the decoded context + row, cut where the two first differ."""
        if not rows:  # (batch_decode reads an empty list as one empty sequence)
            return []
        heads = [list(c[-CONTEXT_TOKENS:]) for c in contexts]
        wholes = [h + list(r) for h, r in zip(heads, rows, strict=True)]
        decode = self.tokenizer.batch_decode
        pairs = zip(decode(heads, skip_special_tokens=True), decode(wholes, skip_special_tokens=True), strict=True)
        return [whole[common_prefix(head, whole) :] for head, whole in pairs]


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase,
    context: int | None,
    name: str,
    template: Template,
    prompt: str,
    new_tokens: int = 0,
) -> list[int]:
    """Token ids of a rendered prompt; special tokens (BOS) are added as the template says (`adds_special_tokens`).

    The first of the template's renderings that leaves room for `new_tokens` in the context is used (an in-context
    template drops examples from the end until one fits). Refuses a prompt that renders to nothing, or whose
    response of `new_tokens` would overrun the context even in its shortest rendering. Needs only the tokenizer and
    the context length, so a run checks every prompt before any weights load."""
    for text in template.renderings(tokenizer, prompt):
        ids = tokenizer(text, add_special_tokens=template.adds_special_tokens)["input_ids"]
        require(ids, f"a prompt renders to no tokens for {name}; give it text or a template with text")
        if context is None or len(ids) + new_tokens <= context:
            return ids
    shortest = " (with no in-context examples left)" if getattr(template, "shots", ()) else ""
    raise UsageError(
        f"a prompt of {len(ids)} tokens{shortest} plus {new_tokens} new tokens exceeds the {context}-token "
        f"context of {name}; shorten the prompt or lower max_new_tokens"
    )


def context_length(config: PretrainedConfig) -> int | None:
    """The most positions a model reads (prompt and response together), where its config says."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_model_dir(path: str) -> None:
    """A local model directory holds a config and weights (every shard its index lists); the tokenizer is checked as
    it loads. Each gap is a one-line error saying what is missing, before anything is read."""
    directory = Path(path).expanduser()
    require(directory.is_dir(), f"model directory {path!r} does not exist; give an existing path or a hub id")
    files = {p.name for p in directory.iterdir()}
    save = "save the model there with model.save_pretrained(dir) and tokenizer.save_pretrained(dir), or fix the path"
    require(files, f"model directory {path!r} is empty; {save}")
    require(
        CONFIG_NAME in files,
        f"model directory {path!r} has no {CONFIG_NAME}, so it is not a saved model (a LoRA adapter? merge it into "
        f"its base model first); {save}",
    )
    weights = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    require(
        any(w in files for w in weights),
        f"model directory {path!r} has a config but no weights ({SAFE_WEIGHTS_NAME} or {WEIGHTS_NAME}); {save}",
    )
    for index in (i for i in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME) if i in files):
        try:
            shards = set(json.loads((directory / index).read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise UsageError(f"model directory {path!r} has an unreadable {index} ({err!r}); save it again") from None
        missing = sorted(shards - files)
        require(
            not missing,
            f"model directory {path!r} lacks {len(missing)} weight file(s) that {index} lists ({missing[0]}); "
            "copy the whole directory",
        )
    for name in sorted(f for f in files if f.endswith(".safetensors")):  # a header read: an interrupted copy shows
        try:
            with safe_open(directory / name, framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise UsageError(f"weights file {name} in {path!r} is damaged ({err}); copy or save it again") from None


def load_config(spec: ModelSpec) -> PretrainedConfig:
    """The model's config alone (no weights): what preflight checks read."""
    if local_dir(spec.path) is not None:
        check_model_dir(spec.path)
    else:
        hub.offline()  # an unreachable hub: the local cache only, without 25 s of retries
    try:
        return AutoConfig.from_pretrained(spec.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as err:
        raise _cannot_load(spec, err, "config") from err


def from_pretrained(spec: ModelSpec, model_class: type) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (of an Auto class) and tokenizer from the hub or a local directory, in eval mode where `spec` says."""
    tokenizer = load_tokenizer(spec)
    check_placement(spec)
    device = rank_device(spec.device or default_device())  # under accelerate launch: this process's own GPU
    try:
        model = model_class.from_pretrained(
            spec.path,
            dtype=DTYPES[spec.dtype],
            device_map=spec.device_map or device,
            max_memory=rank_max_memory(spec.device_map) if spec.device_map in DEVICE_MAP_STRATEGIES else None,
            revision=spec.revision,
            trust_remote_code=spec.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        raise _cannot_load(spec, err, "weights") from err
    return model.eval(), tokenizer


def default_device() -> str:
    """Where a model runs unless its spec says: cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The tokenizer of `spec` (a local directory is checked first), with the chat template `spec` gives in place of
    its own."""
    local = local_dir(spec.path)
    if local is not None:
        check_model_dir(spec.path)
    else:
        hub.offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            spec.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise _cannot_load(spec, err, "tokenizer") from err
    if local is not None:  # without its files transformers builds an empty tokenizer from the config alone
        names = sorted({"tokenizer.json", *tokenizer.vocab_files_names.values()})
        require(
            any((local / name).is_file() for name in names),
            f"model directory {spec.path!r} has no tokenizer ({' or '.join(names)}); save it there with "
            "tokenizer.save_pretrained(dir)",
        )
    if spec.chat_template is not None:
        tokenizer.chat_template = spec.chat_template
    return tokenizer


def _cannot_load(spec: ModelSpec, err: Exception, part: str) -> UsageError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if local_dir(spec.path) is not None:
        return UsageError(
            f"cannot load the {part} of model directory {spec.path!r} ({first}); save the model there again with "
            "save_pretrained, or fix the path"
        )
    if hub.offline():
        return UsageError(
            f"cannot load the {part} of model {spec.path!r}: it is not in the local Hugging Face cache and the hub "
            "cannot be reached (or HF_HUB_OFFLINE is set); download it where the hub is reachable "
            "(hf download ID), or give a local directory"
        )
    return UsageError(
        f"cannot load the {part} of model {spec.path!r} ({first}); give a local directory or a hub id this machine "
        "can reach (offline, set HF_HUB_OFFLINE=1 to use only the local cache)"
    )


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into [rows, width] ids and a validity mask, padding on the left."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r)
            valid[i, width - len(r) :] = 1
    return ids.to(device), valid.to(device)


class KVRows:
    """A batch of token sequences held in one model's KV cache.

    Rows may differ in length (left padding) and may hold masked holes; `mask` marks the real tokens and `length`
    counts them per row, which gives every new token its position id. `select` reorders, repeats or drops rows
    by index, cache included, so a search can branch and prune without re-reading any prefix.
    """

    def __init__(self, lm: HFModel):
        self.lm = lm
        self.cache = DynamicCache(config=lm.model.config)
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=lm.device)
        self.length = torch.zeros(0, dtype=torch.long, device=lm.device)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @torch.inference_mode()
    def extend(self, tokens: torch.Tensor, valid: torch.Tensor | None = None, keep: int = 1) -> torch.Tensor:
        """Append `tokens` [rows, n] (`valid` marks real ones; pads are masked) and return float32 logits
        [rows, k, vocab] of the last `keep` positions (all positions when keep=0)."""
        if valid is None:
            valid = torch.ones_like(tokens)
        if self.mask.shape[0] == 0:  # first call: the batch takes its row count from the input
            self.mask = self.mask.new_zeros((tokens.shape[0], 0))
            self.length = self.length.new_zeros(tokens.shape[0])
        if tokens.shape[1] == 0:  # nothing to read (e.g. one-token prompts held back entirely)
            return torch.zeros((tokens.shape[0], 0, 0), device=self.lm.device)
        positions = self.length[:, None] + valid.cumsum(1) - valid
        self.mask = torch.cat([self.mask, valid], dim=1)
        self.length = self.length + valid.sum(1)
        out = self.lm.model(
            input_ids=tokens,
            attention_mask=self.mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=keep,
        )
        return out.logits.to(device=self.lm.device, dtype=torch.float32)

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` (in that order, repeats allowed): cache, mask and lengths alike."""
        index = index.to(self.lm.device)
        self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.length = self.length.index_select(0, index)

    @torch.inference_mode()
    def forget(self, row: int, columns: list[int]) -> None:
        """Mask cached tokens of one row as if they had never been read (a per-row rewind)."""
        if columns:
            self.mask[row, columns] = 0
            self.length[row] -= len(columns)
