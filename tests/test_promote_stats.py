"""Paired statistics and the promotion rule: plain numpy/scipy, no MLflow, no Ray."""

import subprocess
import sys

import numpy as np
import pytest

from cnnray.promote import compare, decide, decide_first, mcnemar_exact, paired_bootstrap
from cnnray.promote.rule import KEEP, PROMOTE


def _preds(n, acc, seed, k=10):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    right = rng.random(n) < acc
    wrong = (y + rng.integers(1, k, n)) % k
    return y, np.where(right, y, wrong)


def test_mcnemar_exact_matches_the_binomial_by_hand():
    a = np.array([1] * 10 + [0] * 2 + [1] * 30, bool)  # 10 pairs a right/b wrong, 2 a wrong/b right
    b = np.array([0] * 10 + [1] * 2 + [1] * 30, bool)
    p, nb, nc = mcnemar_exact(a, b)
    from math import comb

    by_hand = min(1.0, 2 * sum(comb(12, i) for i in range(0, 3)) / 2 ** 12)
    assert (nb, nc) == (10, 2)
    assert p == pytest.approx(by_hand, rel=1e-9)
    assert mcnemar_exact(a, a)[0] == 1.0


def test_bootstrap_interval_covers_the_difference_and_is_paired():
    y, pa = _preds(2000, 0.9, 0)
    pb = pa.copy()
    flip = np.flatnonzero(pa == y)[:100]  # b is a minus 100 right answers: delta exactly 0.05
    pb[flip] = (y[flip] + 1) % 10
    cmp = compare("accuracy", y, pa, pb, pa == y, pb == y, 10, resamples=1000)
    assert cmp.delta == pytest.approx(0.05)
    assert 0.03 < cmp.ci_low < 0.05 < cmp.ci_high < 0.07
    assert cmp.discordant == (100, 0) and cmp.p_value < 1e-20
    # Unpaired resampling would give an interval several times wider; paired stays tight.
    assert cmp.ci_high - cmp.ci_low < 0.03


def test_identical_models_give_zero_interval_and_no_promotion():
    y, p = _preds(500, 0.8, 1)
    cmp = compare("accuracy", y, p, p, p == y, p == y, 10, resamples=500)
    assert cmp.delta == cmp.ci_low == cmp.ci_high == 0.0 and cmp.p_value == 1.0
    assert decide(cmp, 0.0).outcome == KEEP


@pytest.mark.parametrize("metric", ["accuracy", "top5", "f1_macro"])
def test_clear_improvement_is_promoted_on_each_metric(metric):
    y, pa = _preds(1500, 0.95, 2)
    _, pb = _preds(1500, 0.6, 3)
    pb = np.where(np.random.default_rng(4).random(1500) < 0.6, y, (y + 3) % 10)
    cmp = compare(metric, y, pa, pb, pa == y, pb == y, 10, resamples=300)
    d = decide(cmp, 0.0)
    assert d.outcome == PROMOTE and cmp.ci_low > 0, d.reason
    assert decide(cmp, min_delta=0.9).outcome == KEEP  # the bound must also beat --min-delta


def test_floor_rules():
    assert decide_first(0.7, "accuracy", 0.5).promote
    assert not decide_first(0.4, "accuracy", 0.5).promote
    y, pa = _preds(800, 0.5, 5)
    pb = np.where(np.arange(800) % 4 == 0, y, (y + 1) % 10)  # 25%
    cmp = compare("accuracy", y, pa, pb, pa == y, pb == y, 10, resamples=300)
    assert decide(cmp, 0.0).promote and not decide(cmp, 0.0, floor=0.9).promote


def test_bootstrap_is_deterministic_for_a_seed():
    ca = np.random.default_rng(0).random(300) < 0.7
    f = (lambda idx: ca[idx].mean(1))
    g = (lambda idx: ca[::-1][idx].mean(1))
    assert paired_bootstrap(f, g, 300, seed=3, resamples=200) == paired_bootstrap(f, g, 300, seed=3, resamples=200)


def test_promote_package_imports_neither_mlflow_nor_ray():
    code = ("import sys, cnnray.promote, cnnray.promote.stats, cnnray.promote.rule, cnnray.promote.gate, "
            "cnnray.serve.options, cnnray.tracking.uri; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'ray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
