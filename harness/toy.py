"""Small GPT-2- and Llama-shaped models, and byte-level BPE and Llama-style SentencePiece tokenizers, built locally for
tests, benchmarks and offline demos.

Nothing here downloads anything: tokenizers are trained on the text given, weights are random (seeded) unless a
caller trains them. Saved with `save_pretrained`, they load through the same code path as hub checkpoints.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

EOS = "<|endoftext|>"
# a zephyr-style chat template in plain text markers, so any tokenizer can carry it
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = """
the a an this that film movie story actor actress scene plot music camera director script ending character
is was were be been being has had have will would could should can may might must do did does
good bad great terrible wonderful awful boring funny sad brilliant dull beautiful ugly slow fast long short
and but or so because although while when if then than as of in on at by with from to for about
i you he she it we they me him her us them my your his its our their
really very quite rather too not never always often sometimes just only even still also
love hate like enjoy watch see think feel know say make take give find tell ask seem try leave call
""".split()


def synthetic_corpus(n_sentences: int = 2000, seed: int = 0) -> list[str]:
    """English-looking sentences from a fixed word list: enough text to train a small BPE, no data needed."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n_sentences):
        words = rng.choices(_WORDS, k=rng.randint(4, 16))
        sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ",", "..."]))
    return sentences


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer (EOS doubles as BOS, as in GPT-2) trained on `texts`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)


def train_sentencepiece_tokenizer(texts: Iterable[str], vocab_size: int) -> LlamaTokenizer:
    """A Llama-2-style tokenizer trained on `texts`: BPE over "▁"-marked words with byte fallback, BOS added, built
    by transformers' own LlamaTokenizer (so decoding a response alone drops its leading space, as Llama's does)."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    specials = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]  # the byte-fallback tokens
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) for m in model["merges"]]
    return LlamaTokenizer(vocab=model["vocab"], merges=merges, add_bos_token=True, legacy=False)


def build_gpt2(
    tokenizer: PreTrainedTokenizerFast,
    n_layer: int,
    n_embd: int,
    n_head: int = 4,
    seed: int = 0,
    n_positions: int = 1024,
    eos_logit: float | None = None,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 over `tokenizer`'s vocabulary.

    `eos_logit` pins the EOS logit near that value at every position (about p = e^v / (e^v + vocab)): a large
    negative value means responses never end early, a positive one makes them end often.
    """
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        tie_word_embeddings=eos_logit is None,
    )
    model = GPT2LMHeadModel(config).eval()
    if eos_logit is not None:
        # final-layer-norm bias along a unit direction u, EOS output row along u: logit(EOS) ~ eos_logit
        scale = 10.0
        u = torch.nn.functional.normalize(torch.randn(n_embd), dim=0)
        with torch.no_grad():
            model.transformer.ln_f.bias.copy_(scale * u)
            model.lm_head.weight[eos] = (eos_logit / scale) * u
    return model


def build_llama(
    tokenizer: PreTrainedTokenizerBase,
    n_layer: int,
    hidden: int,
    n_head: int = 4,
    n_kv_head: int | None = None,
    seed: int = 0,
    max_positions: int = 4096,
) -> LlamaForCausalLM:
    """A randomly initialised Llama (RMSNorm, rotary positions, SwiGLU, grouped-query attention) over `tokenizer`."""
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv_head or n_head,
        max_position_embeddings=max_positions,
        bos_token_id=eos if tokenizer.bos_token_id is None else tokenizer.bos_token_id,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def train_causal_lm(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    steps: int,
    *,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """Next-token training on random windows of the texts joined by EOS (bf16 autocast: about 2x faster on CPU)."""
    stream = []
    for text in texts:
        stream += [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]
    data = torch.tensor(stream)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def build_classifier(tokenizer: PreTrainedTokenizerFast, labels: list[str] | None, seed: int = 0):
    """A small DistilBERT sequence classifier: named labels, or one scalar output when `labels` is None."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    names = labels or ["score"]
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=256,
        num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        pad_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return DistilBertForSequenceClassification(config)


def train_classifier(
    model,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    targets: list[float],
    steps: int,
    *,
    batch_size: int = 32,
    max_len: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
):
    """Fit class labels (int targets) or, for a one-output model, a logistic score on 0/1 targets."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    side, tokenizer.truncation_side = tokenizer.truncation_side, "left"  # long inputs keep their end (the response)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scalar = model.config.num_labels == 1
    model.train()
    for _ in range(steps):
        pick = rng.sample(range(len(texts)), min(batch_size, len(texts)))
        inputs = tokenizer(
            [texts[i] for i in pick], padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        logits = model(**inputs).logits
        target = torch.tensor([targets[i] for i in pick])
        if scalar:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.float())
        else:
            loss = torch.nn.functional.cross_entropy(logits, target.long())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    tokenizer.truncation_side = side
    return model.eval()
