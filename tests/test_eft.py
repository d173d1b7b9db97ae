"""Emulated fine-tuning: with no shift it is exactly the strong model; it refuses guides with another vocabulary."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.guide import Guide
from harness.methods import make_method
from harness.types import SampleConfig

SAMPLE = SampleConfig(max_new_tokens=16, temperature=0.9, top_k=0, top_p=0.95)


def test_beta_zero_samples_exactly_from_the_strong_model(zoo, requests):
    plain = make_method("plain").decode(zoo.strong_ending, requests, SAMPLE)
    eft = make_method("eft", beta=0.0).decode(zoo.strong_ending, requests, SAMPLE, guide=zoo.guide)
    assert [o.tokens for o in eft] == [o.tokens for o in plain]
    assert [o.text for o in eft] == [o.text for o in plain]


def test_identical_tuned_and_untuned_sample_exactly_from_the_strong_model(zoo, requests):
    same = Guide(zoo.guide.untuned, zoo.guide.untuned)
    plain = make_method("plain").decode(zoo.strong_ending, requests, SAMPLE)
    eft = make_method("eft", beta=2.0).decode(zoo.strong_ending, requests, SAMPLE, guide=same)
    assert [o.tokens for o in eft] == [o.tokens for o in plain]


def test_a_real_shift_changes_the_samples(zoo, requests):
    plain = make_method("plain").decode(zoo.strong, requests, SAMPLE)
    eft = make_method("eft", beta=3.0).decode(zoo.strong, requests, SAMPLE, guide=zoo.guide)
    assert [o.tokens for o in eft] != [o.tokens for o in plain]
    for o in eft:  # same tokenizer and template: tuned and untuned read exactly what the strong model reads
        assert o.compute.guide_tokens == 2 * o.compute.strong_tokens
        assert o.compute.guide_forward_passes == 2 * o.compute.strong_forward_passes


def test_guides_with_another_vocabulary_are_refused(zoo, requests):
    with pytest.raises(UsageError, match="share the strong model's vocabulary") as err:
        make_method("eft").decode(zoo.strong, requests, SAMPLE, guide=zoo.guide_other_vocab)
    assert "\n" not in str(err.value)
