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
    p_value: float  # McNemar's exact test on the paired 0/1 scores (two-sided; f1_macro: on top-1 correctness)
    n: int
    discordant: tuple[int, int]  # (candidate right & champion wrong, candidate wrong & champion right)
    resamples: int
    p_better: float = 1.0  # McNemar's exact one-sided p-value for "the candidate is better" (the gate's test)

    @property
    def level(self) -> float:
        """The one-sided level of the lower bound: (1 - confidence) / 2."""
        return (1 - self.confidence) / 2


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


def mcnemar_better(b: int, c: int) -> float:
    """Exact one-sided p-value of b or more wins out of b + c discordant pairs under the null (1/2 each)."""
    # deferred (heavy import): scipy
    from scipy.stats import binom

    return 1.0 if b + c == 0 else float(binom.sf(b - 1, b + c, 0.5))


def binary_bootstrap(b: int, c: int, n: int, *, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """The paired bootstrap of a difference of two 0/1 scores, drawn exactly and in O(resamples).

    Resampling n paired examples with replacement only changes how many discordant pairs of each kind the
    resample holds: (b*, c*, rest) ~ Multinomial(n; b/n, c/n, 1 - (b+c)/n) and delta* = (b* - c*) / n. This
    is the same distribution as resampling indices, without materializing resamples x n of them.
    """
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [b / n, c / n, max(0.0, 1 - (b + c) / n)], size=resamples)
    d = (draws[:, 0] - draws[:, 1]) / n
    alpha = 1 - confidence
    return float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))


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
    if metric == "f1_macro":
        fa, fb = macro_f1_of(labels, pred_a, num_classes), macro_f1_of(labels, pred_b, num_classes)
        everything = np.arange(n)[None]
        va, vb = float(fa(everything)[0]), float(fb(everything)[0])
        lo, hi = paired_bootstrap(fa, fb, n, confidence=confidence, resamples=resamples, seed=seed)
        sa, sb = ca, cb  # McNemar on top-1 correctness: a check beside the interval, as for accuracy
    else:
        sa, sb = (ca, cb) if metric == "accuracy" else (np.asarray(top5_a, bool), np.asarray(top5_b, bool))
        va, vb = float(sa.mean()), float(sb.mean())
        b0, c0 = int(np.sum(sa & ~sb)), int(np.sum(~sa & sb))
        lo, hi = binary_bootstrap(b0, c0, n, confidence=confidence, resamples=resamples, seed=seed)
    p, b, c = mcnemar_exact(sa, sb)
    return PairedComparison(metric, va, vb, va - vb, lo, hi, confidence, p, n, (b, c), resamples,
                            p_better=mcnemar_better(b, c))
