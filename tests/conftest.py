"""Small models built locally (no downloads): two byte-level BPE vocabularies, a strong model and guide pairs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from harness.backends.hf import HFModel, ModelSpec
from harness.cli import main
from harness.guide import Guide
from harness.toy import (
    CHAT_TEMPLATE,
    build_gpt2,
    build_llama,
    synthetic_corpus,
    train_sentencepiece_tokenizer,
    train_tokenizer,
)
from harness.types import Request

# ../shared/data from the project root; W2S_SHARED_DATA points elsewhere (e.g. from a worktree of the checkout)
SHARED_DATA = Path(os.environ.get("W2S_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session", autouse=True)
def digest_cache(tmp_path_factory) -> Path:
    """File digests (harness.identity) go to a fresh directory, for this process and the runs it starts alike."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["W2S_CACHE_DIR"] = str(path)
    return path


@dataclass
class Zoo:
    strong: HFModel  # never ends early (EOS suppressed), so runs compare with transformers' generate draw for draw
    strong_ending: HFModel  # ends often (EOS likely), to exercise finished hypotheses
    guide: Guide  # shares the strong model's vocabulary
    guide_other_vocab: Guide  # its own tokenizer: the re-tokenising path
    paths: dict[str, Path]


def _save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    # a small strong vocabulary and a larger guide one: the guide's merges often cross the strong model's tokens
    vocab_a = train_tokenizer(synthetic_corpus(2000, seed=0), 300)
    vocab_b = train_tokenizer(synthetic_corpus(2000, seed=1), 500)
    paths = {
        "strong": _save(build_gpt2(vocab_a, 2, 64, seed=1, eos_logit=-30.0), vocab_a, root / "strong"),
        "strong_ending": _save(build_gpt2(vocab_a, 2, 64, seed=1, eos_logit=1.0), vocab_a, root / "strong_ending"),
        "tuned": _save(build_gpt2(vocab_a, 1, 32, seed=2, eos_logit=1.0), vocab_a, root / "tuned"),
        "untuned": _save(build_gpt2(vocab_a, 1, 32, seed=3), vocab_a, root / "untuned"),
        "tuned_b": _save(build_gpt2(vocab_b, 1, 32, seed=2, eos_logit=1.0), vocab_b, root / "tuned_b"),
        "untuned_b": _save(build_gpt2(vocab_b, 1, 32, seed=3), vocab_b, root / "untuned_b"),
    }
    lm = {name: HFModel.load(ModelSpec(str(path), dtype="float32", device="cpu")) for name, path in paths.items()}
    return Zoo(
        strong=lm["strong"],
        strong_ending=lm["strong_ending"],
        guide=Guide(lm["tuned"], lm["untuned"]),
        guide_other_vocab=Guide(lm["tuned_b"], lm["untuned_b"], beta=0.5),
        paths=paths,
    )


@pytest.fixture(scope="session")
def chat_paths(tmp_path_factory) -> dict[str, Path]:
    """Small Llama-shaped chat models (a chat template set on the tokenizer): a strong model and a guide pair
    sharing its vocabulary, the same strong model without a chat template, and an untrained scalar reward model."""
    from harness.toy import build_classifier

    root = tmp_path_factory.mktemp("chat")
    vocab = train_tokenizer(synthetic_corpus(2000, seed=0), 300)
    plain = _save(build_llama(vocab, 2, 64, seed=4), vocab, root / "no-template")
    vocab.chat_template = CHAT_TEMPLATE
    return {
        "strong": _save(build_llama(vocab, 2, 64, seed=4), vocab, root / "strong"),
        "tuned": _save(build_llama(vocab, 1, 32, seed=5), vocab, root / "tuned"),
        "untuned": _save(build_llama(vocab, 1, 32, seed=6), vocab, root / "untuned"),
        "no-template": plain,
        "reward": _save(build_classifier(vocab, None, seed=7), vocab, root / "reward"),
    }


@dataclass
class LlamaZoo:
    strong: HFModel  # Llama-2-style: SentencePiece (Metaspace) tokenizer with byte fallback and BOS
    guide: Guide  # shares the strong model's vocabulary
    guide_other_vocab: Guide  # byte-level BPE guides: the re-tokenising path
    paths: dict[str, Path]


@pytest.fixture(scope="session")
def llama_zoo(zoo, tmp_path_factory) -> LlamaZoo:
    """Small Llama models over a SentencePiece-style vocabulary, whose decoder drops a leading space."""
    root = tmp_path_factory.mktemp("llama")
    vocab = train_sentencepiece_tokenizer(synthetic_corpus(2000, seed=0), 600)
    paths = {
        "strong": _save(build_llama(vocab, 2, 64, seed=11), vocab, root / "strong"),
        "tuned": _save(build_llama(vocab, 1, 32, seed=12), vocab, root / "tuned"),
        "untuned": _save(build_llama(vocab, 1, 32, seed=13), vocab, root / "untuned"),
    }
    lm = {name: HFModel.load(ModelSpec(str(path), dtype="float32", device="cpu")) for name, path in paths.items()}
    return LlamaZoo(lm["strong"], Guide(lm["tuned"], lm["untuned"]), zoo.guide_other_vocab, paths)


PROMPTS = [
    "The film was",
    "I really love this movie because",
    "Bad",
    "She said the plot was never going to work, and",
    "Why",
    "A long, slow story about a director who",
    "It is",
    "Sometimes the music",
]


@pytest.fixture
def requests() -> list[Request]:
    """Eight prompts of different lengths, each with its own seed."""
    return [Request(f"p{i}", p, seed=100 + i) for i, p in enumerate(PROMPTS)]


def shared(*parts: str) -> Path:
    """A file of ../shared/data; the test is skipped, with the reason, where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} not found: the shared data is expected at ../shared/data from the project root "
            "(or at $W2S_SHARED_DATA)"
        )
    return path


@pytest.fixture(scope="session")
def gold_paths(zoo, tmp_path_factory) -> dict[str, Path]:
    """Untrained small gold models on the strong vocabulary: a two-label sentiment classifier and a scalar RM."""
    from harness.toy import build_classifier

    root = tmp_path_factory.mktemp("gold")
    tokenizer = zoo.strong.tokenizer
    return {
        "sentiment": _save(
            build_classifier(tokenizer, ["NEGATIVE", "POSITIVE"], seed=1), tokenizer, root / "sentiment"
        ),
        "scalar": _save(build_classifier(tokenizer, None, seed=2), tokenizer, root / "scalar"),
    }


def study_dict(zoo, gold_paths, data_dir) -> dict:
    """A valid small study over both tasks with the locally built models."""
    p = zoo.paths
    return {
        "study": "t",
        "out": str(data_dir / "runs"),
        "seeds": [0, 1],
        "limit": 3,
        "batch_size": 2,
        "device": "cpu",
        "dtype": "float32",
        "models": {
            "strong": str(p["strong_ending"]),
            "tuned": str(p["tuned"]),
            "untuned": str(p["untuned"]),
            "tuned_b": str(p["tuned_b"]),
            "untuned_b": str(p["untuned_b"]),
        },
        "guides": {"g": {"tuned": "tuned", "untuned": "untuned"}, "g_b": {"tuned": "tuned_b", "untuned": "untuned_b"}},
        "tasks": {
            "imdb": {
                "data": str(data_dir / "imdb.jsonl"),
                "gold": str(gold_paths["sentiment"]),
                "guide": "g",
                "strong": ["strong"],
                "tuned": {"strong": str(p["strong"])},
                "sample": {"max_new_tokens": 6},
            },
            "tldr": {
                "data": str(data_dir / "tldr.jsonl"),
                "gold": str(gold_paths["scalar"]),
                "gold_text_pair": False,
                "guide": "g",
                "strong": ["strong"],
                "sample": {"max_new_tokens": 6, "stop": ["\n"]},
            },
        },
        "methods": [
            "plain",
            {"bon": {"n": 2}},
            {"cbs": {"width": 2, "successors": 2, "chunk_length": 3}},
            "eft",
            "tuned",
        ],
    }


@pytest.fixture
def data_dir(tmp_path):
    """Small IMDB and TL;DR files in the tasks' formats, in a fresh directory."""
    reviews = [
        {"id": f"r{i}", "label": i % 2, "text": f"Review {i}: the film was good and the plot was slow."}
        for i in range(8)
    ]
    (tmp_path / "imdb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    posts = [
        {"id": f"t{i}", "subreddit": "movies", "title": f"Title {i}", "post": "I saw a film.", "summary": "saw a film"}
        for i in range(8)
    ]
    (tmp_path / "tldr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in posts))
    return tmp_path


def w2s(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: exit code, stdout, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err
