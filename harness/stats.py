"""Corpus-level statistics: mean with a bootstrap confidence interval, and paired comparisons between methods."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


def summarize(values: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """n, mean, std (ddof=1) and a percentile-bootstrap CI of the mean. Fixed seed: the same data gives the same CI."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if x.size == 1:
        return {"n": 1, "mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean}
    means = _bootstrap_means(x, resamples, seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"n": int(x.size), "mean": mean, "std": float(x.std(ddof=1)), "ci_low": float(low), "ci_high": float(high)}


def paired(
    a: Sequence[float], b: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """Compare a and b over the same items (same prompts and seeds, aligned): mean of a - b, its bootstrap CI,
    and a two-sided p-value from a sign-flip randomisation test (the null: a and b are exchangeable per item)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return {"n": 0, "mean_diff": None, "ci_low": None, "ci_high": None, "p_value": None}
    observed = float(d.mean())
    if d.size == 1:
        return {"n": 1, "mean_diff": observed, "ci_low": observed, "ci_high": observed, "p_value": 1.0}
    means = _bootstrap_means(d, resamples, seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice([-1.0, 1.0], size=(resamples, d.size))
    flipped = np.abs((signs * d).mean(axis=1))
    p = (np.count_nonzero(flipped >= abs(observed) - 1e-12) + 1) / (resamples + 1)
    return {"n": int(d.size), "mean_diff": observed, "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


def _bootstrap_means(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
