"""Evaluate a classifier on labelled uint8 images with the training loop's own metric code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnray.classifier.classifier import ImageClassifier
from cnnray.loop.metrics import MetricAccumulator

SCALARS = ("acc", "top5", "loss", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
           "recall_weighted", "f1_weighted")


@dataclass
class EvalResult:
    """Metrics (the training names without the `val_` prefix), confusion matrix and per-example results."""

    metrics: dict[str, float]
    confusion: list[list[int]]
    labels: np.ndarray
    pred: np.ndarray
    top5: np.ndarray  # bool: label among the top 5
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Examples evaluated."""
        return int(len(self.labels))

    def metric(self, name: str) -> float:
        """accuracy, top5 or f1_macro (the promotion metrics) or any key of `metrics`."""
        return float(self.metrics["acc" if name == "accuracy" else name])


def _finish(acc: MetricAccumulator, labels: list[np.ndarray], pred: list[np.ndarray], top5: list[np.ndarray]) -> EvalResult:
    out = acc.compute(prefix="")
    cm = out.pop("confusion_matrix")
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    return EvalResult({k: float(out[k]) for k in SCALARS}, cm, cat(labels, np.int64), cat(pred, np.int64),
                      cat(top5, bool))


def evaluate_arrays(clf: ImageClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> EvalResult:
    """Metrics of `clf` on uint8 [N,C,S,S] images (already at its input contract) and int64 labels."""
    k = clf.card.num_classes
    acc = MetricAccumulator(k)
    labels, preds, top5s = [], [], []
    for i in range(0, x.shape[0], batch_size):
        logits = clf.logits_uint8(x[i:i + batch_size], batch_size)
        yb = y[i:i + batch_size].long()
        acc.update(logits, yb, F.cross_entropy(logits, yb, reduction="sum"))
        labels.append(yb.numpy())
        preds.append(logits.argmax(1).numpy())
        top5s.append((logits.topk(min(5, k), dim=1).indices == yb[:, None]).any(1).numpy())
    return _finish(acc, labels, preds, top5s)


def result_from_rows(labels: np.ndarray, pred: np.ndarray, top5: np.ndarray, nll: np.ndarray,
                     num_classes: int) -> EvalResult:
    """The same metrics from per-example rows (what Ray Data batch inference returns)."""
    acc = MetricAccumulator(num_classes)
    y, p = torch.as_tensor(labels, dtype=torch.int64), torch.as_tensor(pred, dtype=torch.int64)
    acc.confusion += torch.bincount(y * num_classes + p, minlength=num_classes ** 2).view(num_classes, num_classes)
    acc.top1 += int((y == p).sum())
    acc.top5 += int(np.asarray(top5, bool).sum())
    acc.loss_sum += float(np.asarray(nll, np.float64).sum())
    acc.n += int(y.numel())
    return _finish(acc, [np.asarray(labels)], [np.asarray(pred)], [np.asarray(top5)])


def per_class_rows(confusion: list[list[int]], class_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    rows = []
    for i, name in enumerate(class_names):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / support[i] if support[i] else 0.0
        rows.append({"class": name, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                     "support": int(support[i])})
    return rows
