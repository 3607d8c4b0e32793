"""Precision, recall and F1 from a confusion matrix: the one implementation behind logged metrics and reports.

Convention (scikit-learn's defaults, stated once here): a class's precision, recall or F1 whose
denominator is 0 counts as 0 (`zero_division=0`); macro averages run over the classes *seen*, those
present in the true labels or the predictions (what `f1_score(y, p, average="macro")` does when
`labels` is not given, since it uses `unique_labels(y, p)`); weighted averages weight each class by
its support (true count), so unseen classes drop out of them too. A class that is neither a label
nor a prediction in the evaluated data says nothing about the model, and averaging its 0 in would
make the macro scores depend on how many classes happen to be absent from a validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    """Per-class arrays (length C) and their macro/weighted averages; rows of the matrix are true classes."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true count per class
    seen: np.ndarray  # bool: the class occurs in the labels or the predictions
    accuracy: float
    macro: dict[str, float]  # precision, recall, f1 averaged over the seen classes
    weighted: dict[str, float]  # ... weighted by support


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def class_scores(confusion: Sequence[Sequence[float]] | np.ndarray) -> ClassScores:
    """Scores of a C x C confusion matrix (rows = true class, columns = predicted class)."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {cm.shape}")
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    precision, recall = _div(tp, predicted), _div(tp, support)
    f1 = _div(2 * tp, support + predicted)  # = 2PR/(P+R), and 0 where P+R is 0
    seen = (support + predicted) > 0
    total = support.sum()
    weights = support / total if total > 0 else np.zeros_like(support)
    per = {"precision": precision, "recall": recall, "f1": f1}
    macro = {k: float(v[seen].mean()) if seen.any() else 0.0 for k, v in per.items()}
    weighted = {k: float((v * weights).sum()) for k, v in per.items()}
    return ClassScores(precision, recall, f1, support.astype(np.int64), seen,
                       float(tp.sum() / total) if total > 0 else 0.0, macro, weighted)
