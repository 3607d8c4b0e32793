"""Paired statistics on per-example results of two models on the same examples (plain numpy/scipy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CHUNK = 64  # bootstrap resamples drawn at a time: bounds memory at CHUNK * N indices


@dataclass(frozen=True)
class PairedComparison:
    """Candidate minus champion on one metric: point estimate, bootstrap interval, McNemar p-value."""

    metric: str
    candidate: float
    champion: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # McNemar's exact test on top-1 correctness (two-sided)
    n: int
    discordant: tuple[int, int]  # (candidate right & champion wrong, candidate wrong & champion right)
    resamples: int


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """(two-sided exact p-value, b, c): b = a right & b wrong, c = a wrong & b right; binomial(b+c, 1/2)."""
    # deferred (heavy import): scipy
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return 1.0, 0, 0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue), b, c


def accuracy_of(per_example: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean of a per-example 0/1 score over each row of resample indices."""
    return per_example[idx].mean(axis=1)


def macro_f1_of(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    """A resample -> macro F1 function (classes seen in labels or predictions, like the training metric)."""
    def f(idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape[0])
        for r in range(idx.shape[0]):
            y, p = labels[idx[r]], pred[idx[r]]
            tp = np.bincount(y[y == p], minlength=num_classes)
            t = np.bincount(y, minlength=num_classes)
            q = np.bincount(p, minlength=num_classes)
            seen = (t + q) > 0
            f1 = np.where(t + q > 0, 2 * tp / np.maximum(t + q, 1), 0.0)
            out[r] = f1[seen].mean() if seen.any() else 0.0
        return out

    return f


def paired_bootstrap(stat_a: Callable[[np.ndarray], np.ndarray], stat_b: Callable[[np.ndarray], np.ndarray], n: int,
                     *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of stat_a - stat_b over `resamples` paired resamples of the n examples."""
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, n, size=(min(CHUNK, resamples - start), n))
        deltas.append(stat_a(idx) - stat_b(idx))
    d = np.concatenate(deltas)
    alpha = 1 - confidence
    return float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))


METRICS = ("accuracy", "top5", "f1_macro")


def compare(metric: str, labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, top5_a: np.ndarray,
            top5_b: np.ndarray, num_classes: int, *, confidence: float = 0.95, resamples: int = 2000,
            seed: int = 0) -> PairedComparison:
    """Candidate (a) vs champion (b) on `metric` over the same examples, with interval and McNemar p-value."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    labels, pred_a, pred_b = (np.asarray(v, np.int64) for v in (labels, pred_a, pred_b))
    n = len(labels)
    if n == 0:
        raise ValueError("no examples to compare on")
    ca, cb = pred_a == labels, pred_b == labels
    if metric == "accuracy":
        fa, fb = (lambda idx: accuracy_of(ca.astype(float), idx)), (lambda idx: accuracy_of(cb.astype(float), idx))
    elif metric == "top5":
        ta, tb = np.asarray(top5_a, float), np.asarray(top5_b, float)
        fa, fb = (lambda idx: accuracy_of(ta, idx)), (lambda idx: accuracy_of(tb, idx))
    else:
        fa, fb = macro_f1_of(labels, pred_a, num_classes), macro_f1_of(labels, pred_b, num_classes)
    everything = np.arange(n)[None]
    va, vb = float(fa(everything)[0]), float(fb(everything)[0])
    lo, hi = paired_bootstrap(fa, fb, n, confidence=confidence, resamples=resamples, seed=seed)
    p, b, c = mcnemar_exact(ca, cb)
    return PairedComparison(metric, va, vb, va - vb, lo, hi, confidence, p, n, (b, c), resamples)
