"""The CBS engine and its special cases: equivalences with transformers, best-of-N, batch invariance, endings."""

from __future__ import annotations

import pytest
from reference import full_rescore, full_rescore_text, hf_generate

from harness.guide import Guide
from harness.methods import make_method
from harness.types import Request, SampleConfig

SAMPLE = SampleConfig(max_new_tokens=20, temperature=0.7, top_k=50)


@pytest.mark.parametrize("method", [("plain", {}), ("cbs", {"width": 1, "successors": 1, "chunk_length": 5})])
def test_one_hypothesis_one_successor_is_plain_sampling_of_the_strong_model(zoo, requests, method):
    name, params = method
    outputs = make_method(name, **params).decode(zoo.strong, requests, SAMPLE, guide=zoo.guide)
    for request, output in zip(requests, outputs, strict=True):
        assert output.tokens == hf_generate(zoo.strong, request.prompt, request.seed, SAMPLE)[0]
        assert output.text == zoo.strong.tokenizer.decode(output.tokens, skip_special_tokens=True)


@pytest.mark.parametrize("which", ["guide", "guide_other_vocab"])
def test_best_of_n_returns_the_sampled_candidate_with_the_highest_guide_reward(zoo, requests, which):
    guide, n = getattr(zoo, which), 6
    outputs = make_method("bon", n=n).decode(zoo.strong, requests[:3], SAMPLE, guide=guide)
    for request, output in zip(requests[:3], outputs, strict=True):
        candidates = hf_generate(zoo.strong, request.prompt, request.seed, SAMPLE, n=n)
        rewards = [full_rescore(guide, zoo.strong, request.prompt, c, False) for c in candidates]
        best = max(range(n), key=rewards.__getitem__)
        assert output.tokens == candidates[best]
        assert output.score == pytest.approx(rewards[best], abs=1e-4)
        assert output.trace == [[pytest.approx(output.score)]]


METHODS = [
    ("plain", {}),
    ("bon", {"n": 4}),
    ("cbs", {"width": 2, "successors": 3, "chunk_length": 4}),
    ("eft", {"beta": 1.0}),
]
CASES = [  # every method with both guides, but EFT only with the guide that shares the strong vocabulary
    (method, which)
    for method in METHODS
    for which in ("guide", "guide_other_vocab")
    if method[0] != "eft" or which == "guide"
]


@pytest.mark.parametrize(("method", "which"), CASES, ids=[f"{m[0]}-{w}" for m, w in CASES])
@pytest.mark.parametrize("strong", ["strong", "strong_ending"])
def test_a_prompts_output_does_not_depend_on_its_batch(zoo, requests, method, strong, which):
    name, params = method
    decoder, lm, guide = make_method(name, **params), getattr(zoo, strong), getattr(zoo, which)
    sample = SampleConfig(max_new_tokens=16, stop=("!",))
    together = decoder.decode(lm, requests, sample, guide=guide)
    for i in (0, 3, 7):
        alone = decoder.decode(lm, [requests[i]], sample, guide=guide)[0]
        assert (alone.tokens, alone.text) == (together[i].tokens, together[i].text)
        if alone.score is not None:  # the same numbers summed over differently padded batches
            assert alone.score == pytest.approx(together[i].score, abs=1e-5)


def test_hypotheses_that_hit_eos_are_never_extended(zoo, requests):
    sample = SampleConfig(max_new_tokens=30)
    outputs = make_method("cbs", width=2, successors=2, chunk_length=3).decode(
        zoo.strong_ending, requests, sample, guide=zoo.guide
    )
    eos = zoo.strong_ending.eos_ids
    assert {o.finish_reason for o in outputs} == {"eos", "length"}  # both cases occurred
    for o in outputs:
        assert not any(t in eos for t in o.tokens[:-1])
        if o.finish_reason == "eos":
            assert o.tokens[-1] in eos and len(o.tokens) <= 30
            assert o.text == zoo.strong_ending.tokenizer.decode(o.tokens[:-1])
        else:
            assert len(o.tokens) == 30


def test_a_stop_string_ends_the_hypothesis_and_its_text(zoo, requests):
    sample = SampleConfig(max_new_tokens=30, stop=("e",))
    outputs = make_method("cbs", width=2, successors=2, chunk_length=3).decode(
        zoo.strong, requests, sample, guide=zoo.guide_other_vocab
    )
    assert any(o.finish_reason == "stop" for o in outputs)
    for o in outputs:
        full = zoo.strong.tokenizer.decode(o.tokens)
        if o.finish_reason == "stop":
            assert "e" in full and "e" not in zoo.strong.tokenizer.decode(o.tokens[:-1])  # its last token completed it
            assert o.text == full[: full.index("e")]
        else:
            assert "e" not in full and len(o.tokens) == 30


def test_search_trace_and_compute_are_recorded(zoo, requests):
    sample = SampleConfig(max_new_tokens=12)
    plain = make_method("plain").decode(zoo.strong, requests, sample)
    for request, o in zip(requests, plain, strict=True):
        prompt = len(zoo.strong.tokenizer(request.prompt)["input_ids"])
        assert o.compute.strong_tokens == prompt + len(o.tokens) - 1  # the last token is never read
        assert o.compute.strong_forward_passes == len(o.tokens)
        assert o.compute.guide_tokens == 0 and o.compute.seconds > 0
    cbs = make_method("cbs", width=2, successors=2, chunk_length=4).decode(
        zoo.strong, requests, sample, guide=zoo.guide
    )
    for o in cbs:
        assert len(o.trace) == 3  # chunk boundaries at 4, 8, 12 tokens
        assert all(len(kept) == 2 and kept == sorted(kept, reverse=True) for kept in o.trace)
        assert o.score == o.trace[-1][0]
        assert o.compute.guide_tokens > 0 and o.compute.strong_tokens > 4 * 8


def test_batch_of_zero_requests_returns_nothing(zoo):
    assert make_method("cbs").decode(zoo.strong, [], SAMPLE, guide=zoo.guide) == []


def test_plain_sampling_seeds_are_per_prompt(zoo):
    a, b = (make_method("plain").decode(zoo.strong, [Request("x", "The film", seed=s)], SAMPLE)[0] for s in (1, 2))
    assert a.tokens != b.tokens


def test_a_retokenizing_guide_ranks_by_the_reward_of_the_text(zoo, requests):
    """With retokenize=True a shared-vocabulary guide scores re-tokenised text, as the paper's code does."""
    guide = Guide(zoo.guide.tuned, zoo.guide.untuned, retokenize=True)
    outputs = make_method("cbs", width=2, successors=2, chunk_length=4).decode(
        zoo.strong, requests[:4], SAMPLE, guide=guide
    )
    for request, o in zip(requests[:4], outputs, strict=True):
        finished = o.finish_reason != "length"
        assert o.score == pytest.approx(full_rescore_text(guide, request.prompt, o.text, finished), abs=1e-4)
