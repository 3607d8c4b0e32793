"""Checks that the evidence comes from one held-out test set: big enough, every class present, and the
same test set the candidate and the champion recorded when they were trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnray.errors import UserInputError
from cnnray.tracking.lineage import TEST_FINGERPRINT_TAG

MIN_TEST = 50  # an interval on fewer held-out images decides nothing


def recorded_test_fingerprint(tags: Mapping[str, str], card: Any) -> str:
    """The test fingerprint a version recorded at training ("" for a version from before test splits)."""
    return tags.get(TEST_FINGERPRINT_TAG) or str((card.training or {}).get("test_fingerprint") or "")


def check_test_split(info: Any, source: str) -> str:
    """The evaluation data's test fingerprint; UserInputError when it has no test split or too few images."""
    fp, n = getattr(info, "test_fingerprint", ""), int(getattr(info, "num_test", 0))
    if not fp or n == 0:
        raise UserInputError(f"the evaluation data ({source}) has no test split: set data.test_fraction > 0, add a "
                             "test/ folder, or prepare the data again with `cnnray data prepare` (it writes test "
                             "shards)")
    if n < MIN_TEST:
        raise UserInputError(f"the test split of {source} has {n} images; the gate needs at least {MIN_TEST} "
                             "(an interval on so few decides nothing): raise data.test_fraction or add test images")
    return fp


def check_class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> None:
    """UserInputError naming the per-class counts when a class has no test image."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(class_names))
    missing = [class_names[i] for i, c in enumerate(counts) if c == 0]
    if missing:
        shown = ", ".join(f"{n}: {int(c)}" for n, c in zip(class_names, counts))
        raise UserInputError(f"the test split has no image of class(es) {', '.join(missing[:10])} (per class: "
                             f"{shown[:600]}); the gate would not see how either model does there")


def verify_candidate(label: str, tags: Mapping[str, str], card: Any, test_fp: str) -> None:
    """The candidate recorded this test set at training; UserInputError otherwise."""
    recorded = recorded_test_fingerprint(tags, card)
    if not recorded:
        raise UserInputError(
            f"{label} records no test-split fingerprint: it was trained before held-out test splits existed, so "
            "its training or selection data may include these test images; train it again (its version then "
            "records the test set), or judge on a selection split with --split val --allow-selection-split")
    if recorded != test_fp:
        raise UserInputError(f"{label} was held out against another test set (fingerprint {recorded[:12]}) than the "
                             f"evaluation data's test split ({test_fp[:12]}); pass the data.* keys it was trained "
                             "with: a different test set is never compared silently")


def verify_champion(label: str, tags: Mapping[str, str], card: Any, test_fp: str, allow_unverified: bool) -> bool:
    """True when the champion's test set could not be verified (allowed); UserInputError when it differs."""
    recorded = recorded_test_fingerprint(tags, card)
    if recorded and recorded != test_fp:
        raise UserInputError(f"champion {label} was held out against another test set (fingerprint {recorded[:12]}) "
                             f"than the candidate's ({test_fp[:12]}): the two cannot be compared on one test set")
    if not recorded and not allow_unverified:
        raise UserInputError(
            f"champion {label} records no test-split fingerprint (trained before held-out test splits): cnnray "
            "cannot verify it never trained on the candidate's test images; pass --allow-unverified-champion to "
            "compare both on the candidate's test split anyway (the decision is tagged as such)")
    return not recorded
