"""Evaluate one or more classifiers on the same labelled examples: in-process for small sources, Ray Data
batch inference for Parquet sources (results stay paired row by row for promotion)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnray.classifier.classifier import ImageClassifier
from cnnray.config.data import DataSection
from cnnray.serve.batch import parquet_source, stream_predictions
from cnnray.serve.data import load_split
from cnnray.serve.evaluate import EvalResult, evaluate_arrays, result_from_rows


def uses_ray(data: DataSection) -> bool:
    """Parquet sources stream through Ray Data unless data.loader=memory asks for in-process decoding."""
    return data.source == "parquet" and data.loader != "memory"


def evaluate_models(models: list[ImageClassifier], data: DataSection, split: str) -> list[EvalResult]:
    """One EvalResult per model, all on the same examples in the same order."""
    if uses_ray(data):
        return _with_ray(models, data, split)
    cache: dict[tuple[int, int], Any] = {}
    results = []
    for clf in models:
        c = clf.card.input
        key = (c.image_size, c.channels)
        if key not in cache:  # a champion with another input size reads the same split at its own size
            cache[key] = load_split(data.model_copy(update={"image_size": c.image_size, "channels": c.channels}), split)
        d = cache[key]
        results.append(evaluate_arrays(clf, d.x, d.y))
    return results


def _with_ray(models: list[ImageClassifier], data: DataSection, split: str) -> list[EvalResult]:
    source = parquet_source(data.path or "", split)
    rows: dict[str, list[np.ndarray]] = {}
    for batch in stream_predictions(source, models):
        for k, v in batch.items():
            rows.setdefault(k, []).append(np.asarray(v))
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    if "label" not in cat:
        return [result_from_rows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0),
                                 clf.card.num_classes) for clf in models]
    return [result_from_rows(cat["label"], cat[f"pred_{m}"], cat[f"top5_{m}"], cat[f"nll_{m}"], clf.card.num_classes)
            for m, clf in enumerate(models)]
