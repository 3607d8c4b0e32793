"""The one look training takes at the test split: the chosen weights evaluated once, after every selection
(best epoch, EMA or raw, early stopping, Tune's winner) is made, so the version carries honest `test_*` numbers
and the fingerprint of the test set the promotion gate must judge it on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnray.tracking.lineage import TEST_COUNT_TAG, TEST_FINGERPRINT_TAG

# Held-out metrics copied onto the registered version beside the val_* selection metrics.
TEST_METRICS = ("test_acc", "test_top5", "test_loss", "test_f1_macro")


@dataclass(frozen=True)
class HeldOut:
    """The test-split evaluation of one version (empty when the data has no test split)."""

    fingerprint: str = ""
    n: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """Version tags: the test set and its metrics."""
        if not self.fingerprint:
            return {}
        return {TEST_FINGERPRINT_TAG: self.fingerprint, TEST_COUNT_TAG: str(self.n),
                **{f"cnnray.metric.{k}": f"{self.metrics[k]:.6g}" for k in TEST_METRICS if k in self.metrics}}

    def card_fields(self) -> dict[str, Any]:
        """What the model card's `training` records of it."""
        if not self.fingerprint:
            return {}
        return {"test_fingerprint": self.fingerprint, "test_n": self.n,
                "test_metrics": {k: self.metrics[k] for k in TEST_METRICS if k in self.metrics}}


def evaluate_held_out(card: Any, weights: dict[str, Any], data_cfg: Any, info: Any, loader_kind: str) -> HeldOut:
    """Evaluate the chosen weights on the test split once; an empty HeldOut when there is none."""
    if not getattr(info, "test_fingerprint", "") or not getattr(info, "num_test", 0):
        return HeldOut()
    # deferred (heavy import): torch, PIL, pyarrow
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.data import absolute_data_path
    from cnnray.serve.run_eval import evaluate_models

    clf = ImageClassifier(card, weights)
    c = card.input
    data = absolute_data_path(data_cfg).model_copy(update={
        "image_size": c.image_size, "channels": c.channels,
        "loader": "streaming" if loader_kind == "streaming" else "memory"})
    res = evaluate_models([clf], data, "test")[0]
    return HeldOut(info.test_fingerprint, res.n, {f"test_{k}": float(v) for k, v in res.metrics.items()})
