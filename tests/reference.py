"""Independent reference computations the tests compare the engine with: no caches, no incremental state."""

from __future__ import annotations

import random

import torch

from harness.backends.hf import HFModel
from harness.guide import Guide, common_prefix
from harness.toy import synthetic_corpus


def full_rescore(guide: Guide, strong: HFModel, prompt: str, response: list[int], finished: bool) -> float:
    """beta * (log p_tuned - log p_untuned) of the response, from one uncached forward pass per model."""

    def logp(lm: HFModel) -> float:
        prompt_text = guide.template.render(lm.tokenizer, prompt)
        prompt_ids = lm.tokenizer(prompt_text)["input_ids"]
        if lm.same_vocab(strong):
            body = response[:-1] if finished and response and response[-1] in strong.eos_ids else response
            ids, start = prompt_ids + body, len(prompt_ids)
        else:
            ids = lm.tokenizer(prompt_text + response_text(strong, prompt, response))["input_ids"]
            start = common_prefix(prompt_ids, ids)
        ids = ids + ([lm.tokenizer.eos_token_id] if finished else [])
        return sum_logprobs(lm, ids, start)

    return guide.beta * (logp(guide.tuned) - logp(guide.untuned))


def response_text(strong: HFModel, prompt: str, response: list[int]) -> str:
    """What follows the prompt in the decoded prompt + response (the paper's code cuts the prompt text off alike)."""
    prompt_ids = strong.tokenizer(prompt)["input_ids"]
    head = strong.tokenizer.decode(prompt_ids, skip_special_tokens=True)
    whole = strong.tokenizer.decode(prompt_ids + response, skip_special_tokens=True)
    assert whole.startswith(head)
    return whole[len(head) :]


def sum_logprobs(lm: HFModel, ids: list[int], start: int) -> float:
    """Sum of log p(ids[i] | ids[:i]) for i >= start, from one uncached forward pass. The first token has nothing
    before it and is never scored (the paper's scorer shifts labels by one), even when re-tokenising merged the
    whole prompt into the response."""
    with torch.no_grad():
        logprobs = lm.model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    return sum(logprobs[i - 1, ids[i]].item() for i in range(max(start, 1), len(ids)))


def random_response(strong: HFModel, rng: random.Random, length: int) -> list[int]:
    """Word-like text with a few arbitrary tokens mixed in, as the strong model's token ids."""
    text = " ".join(synthetic_corpus(12, seed=rng.randrange(10**6)))
    ids = strong.tokenizer(text)["input_ids"][:length]
    vocab = [i for i in range(len(strong.tokenizer)) if i not in strong.eos_ids]
    return [rng.choice(vocab) if rng.random() < 0.1 else t for t in ids]


def hf_generate(strong: HFModel, prompt: str, seed: int, sample, n: int = 1) -> list[list[int]]:
    """transformers' own sampling under torch.manual_seed(seed): n responses, EOS kept, padding dropped."""
    inputs = strong.tokenizer(prompt, return_tensors="pt")
    torch.manual_seed(seed)
    out = strong.model.generate(
        **inputs,
        do_sample=True,
        temperature=sample.temperature,
        top_k=sample.top_k,
        top_p=sample.top_p,
        max_new_tokens=sample.max_new_tokens,
        num_return_sequences=n,
        pad_token_id=strong.pad_id,
    )
    responses = []
    for row in out[:, inputs["input_ids"].shape[1] :].tolist():
        ends = [i for i, t in enumerate(row) if t in strong.eos_ids]
        responses.append(row[: ends[0] + 1] if ends else row)
    return responses


def full_rescore_text(guide: Guide, prompt: str, text: str, finished: bool) -> float:
    """The implicit reward of a response text: each guide model re-tokenises prompt + text, one uncached pass."""

    def logp(lm: HFModel) -> float:
        prompt_text = guide.template.render(lm.tokenizer, prompt)
        ids = lm.tokenizer(prompt_text + text)["input_ids"] + ([lm.tokenizer.eos_token_id] if finished else [])
        return sum_logprobs(lm, ids, common_prefix(lm.tokenizer(prompt_text)["input_ids"], ids))

    return guide.beta * (logp(guide.tuned) - logp(guide.untuned))
