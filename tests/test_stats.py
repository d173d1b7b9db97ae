"""Bootstrap summaries and paired comparisons behave as a reader of the tables expects."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import paired, summarize


def test_summary_brackets_the_mean_and_is_reproducible():
    x = np.random.default_rng(0).normal(2.0, 1.0, size=200)
    s = summarize(x)
    assert s["n"] == 200 and s["mean"] == pytest.approx(x.mean())
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    assert s["ci_high"] - s["ci_low"] == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(200), rel=0.15)
    assert summarize(x) == s


def test_summary_of_tiny_samples():
    assert summarize([]) == {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    assert summarize([3.0]) == {"n": 1, "mean": 3.0, "std": 0.0, "ci_low": 3.0, "ci_high": 3.0}


def test_paired_comparison_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, size=100)
    better = base + 0.5 + rng.normal(0, 0.3, size=100)
    same = base + rng.normal(0, 0.3, size=100)
    shift = paired(better, base)
    assert shift["mean_diff"] == pytest.approx(0.5, abs=0.1)
    assert shift["ci_low"] > 0 and shift["p_value"] < 0.01
    null = paired(same, base)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_value"] > 0.05
