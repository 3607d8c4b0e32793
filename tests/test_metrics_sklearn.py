"""cnnray.scores.class_scores, MetricAccumulator and per_class_report against scikit-learn.

The convention under test: macro averages over the classes present in y_true or y_pred (sklearn's
default `labels`), zero_division=0, weighted by support.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from cnnray.scores import class_scores
from cnnray.tracking.per_class import per_class_report
from cnnray.loop.metrics import MetricAccumulator


def _cm(y, p, c):
    return skm.confusion_matrix(y, p, labels=range(c))


def _check(y, p, c):
    s = class_scores(_cm(y, p, c))
    for avg in ("macro", "weighted"):
        pr, rc, f1, _ = skm.precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        got = s.macro if avg == "macro" else s.weighted
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((pr, rc, f1)), avg
    assert s.macro["f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(c), average=None, zero_division=0)
    np.testing.assert_allclose(s.precision, pr)
    np.testing.assert_allclose(s.recall, rc)
    np.testing.assert_allclose(s.f1, f1)
    np.testing.assert_array_equal(s.support, sup)
    assert s.accuracy == pytest.approx(skm.accuracy_score(y, p))
    assert set(np.flatnonzero(s.seen)) == set(np.union1d(y, p))
    return s


@pytest.mark.parametrize("seed", range(8))
def test_random_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 12))
    n = int(rng.integers(1, 200))
    y = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    _check(y, p, c)


def test_class_never_predicted():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 0])  # class 2 is true but never predicted: precision 0/0 -> 0
    s = _check(y, p, 3)
    assert s.precision[2] == 0 and s.recall[2] == 0 and s.seen[2]


def test_class_absent_from_true_labels():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 2, 1, 1])  # class 2 predicted but never true: it counts in macro with recall 0
    s = _check(y, p, 4)  # class 3 is neither: left out of the macro average
    assert s.seen.tolist() == [True, True, True, False]
    assert s.macro["f1"] != pytest.approx(s.f1.mean())  # averaging over all 4 classes would differ


def test_single_class():
    y = p = np.array([1, 1, 1])
    s = _check(y, p, 3)
    assert s.macro == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    y2, p2 = np.array([0, 0, 0]), np.array([0, 1, 0])
    _check(y2, p2, 3)


def test_empty_matrix_is_zero():
    s = class_scores(np.zeros((3, 3)))
    assert s.macro == {"precision": 0.0, "recall": 0.0, "f1": 0.0} and s.accuracy == 0.0


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        class_scores([[1, 2, 3]])


@pytest.mark.parametrize("seed", range(3))
def test_accumulator_and_report_agree(seed):
    """The logged val_*_macro and per_class_report.txt come from the same numbers."""
    c = 6
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (80,), generator=g)  # classes 4, 5 never true
    logits = torch.randn(80, c, generator=g) + 1.5 * F.one_hot(labels, c)
    logits[:, 5] = -50.0  # class 5 never predicted either
    acc = MetricAccumulator(c)
    acc.update(logits, labels, F.cross_entropy(logits, labels, reduction="sum"))
    out = acc.compute()
    text = per_class_report(out["confusion_matrix"], [f"c{i}" for i in range(c)])
    macro = next(line for line in text.splitlines() if line.strip().startswith("macro avg")).split()
    weighted = next(line for line in text.splitlines() if line.strip().startswith("weighted avg")).split()
    assert [float(v) for v in macro[2:5]] == pytest.approx(
        [out["val_precision_macro"], out["val_recall_macro"], out["val_f1_macro"]], abs=5e-5)
    assert [float(v) for v in weighted[2:5]] == pytest.approx(
        [out["val_precision_weighted"], out["val_recall_weighted"], out["val_f1_weighted"]], abs=5e-5)
    y, p = labels.numpy(), logits.argmax(1).numpy()
    assert out["val_f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))


def _parse(text):
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isdigit():
            name = " ".join(parts[:-4])
            rows[name] = parts[-4:]
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_per_class_report_matches_classification_report(seed):
    rng = np.random.default_rng(100 + seed)
    c = 7
    y = rng.integers(0, 5, 120)  # classes 5, 6 never true
    p = np.where(rng.random(120) < 0.5, y, rng.integers(0, 6, 120))  # class 6 never predicted
    names = [f"class{i}" for i in range(c)]
    text = per_class_report(_cm(y, p, c).tolist(), names)
    seen = np.union1d(y, p)
    ref = skm.classification_report(y, p, labels=seen, target_names=[names[i] for i in seen],
                                    output_dict=True, zero_division=0)
    rows = _parse(text)
    for i in range(c):
        if i in seen:
            r = ref[names[i]]
            got = [float(v) for v in rows[names[i]][:3]]
            assert got == pytest.approx([r["precision"], r["recall"], r["f1-score"]], abs=5e-5)
            assert int(rows[names[i]][3]) == r["support"]
        else:
            assert rows[names[i]][:3] == ["-", "-", "-"]
    for key in ("macro avg", "weighted avg"):
        got = [float(v) for v in rows[key][:3]]
        assert got == pytest.approx([ref[key]["precision"], ref[key]["recall"], ref[key]["f1-score"]], abs=5e-5)
        assert int(rows[key][3]) == len(y)
    assert float(text.split("accuracy")[1].split()[0]) == pytest.approx(skm.accuracy_score(y, p), abs=5e-5)
