"""Deterministic stratified train/val/test splits, independent of library versions beyond numpy's PCG64."""

from __future__ import annotations

import numpy as np


def _take(n: int, fraction: float, leave: int) -> int:
    """How many of a class's n images a split of `fraction` takes: round(n * fraction), at least 1 when the
    fraction is > 0, and never so many that fewer than `leave` remain for the other splits."""
    if fraction <= 0 or n <= leave:
        return 0
    return min(max(round(n * fraction), 1), n - leave)


def stratified_split3(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted int64 (train, val, test) index arrays, stratified by class; both fractions are of the whole set.

    Per class (in sorted order, one seeded permutation each): the first round(n * test_fraction) images go to
    test, the next round(n * val_fraction) to val, the rest to train. The test set therefore depends only on
    the labels, `test_fraction` and `seed`: changing `val_fraction` never moves an image into or out of test.
    A class of >= 3 images keeps one in each split whose fraction is > 0 and one in train; a class of 2 goes
    to train and val; a class of 1 to train. With test_fraction=0 the (train, val) split is the one cnnray
    made before test splits existed, index for index.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in np.unique(labels):  # sorted classes: the rng is consumed in a fixed order
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        # leave=2 whatever val_fraction is (room for one val and one train image), so test ignores val_fraction
        n_test = _take(n, test_fraction, 2) if n >= 3 else 0
        n_val = min(_take(n, val_fraction, 1), n - n_test - 1) if n - n_test >= 2 else 0
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    empty = np.zeros(0, dtype=np.int64)
    tr, va, te = (np.sort(np.concatenate(p or [empty])).astype(np.int64) for p in parts)
    return tr, va, te


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) index arrays with no test split; every class with >= 2 samples keeps one on each side."""
    tr, va, _ = stratified_split3(labels, val_fraction, 0.0, seed)
    return tr, va
