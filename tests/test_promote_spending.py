"""The false-promotion budget of a test set and the gate's one-sided rule: plain Python, no MLflow, no Ray."""

import numpy as np
import pytest

from cnnray.errors import UserInputError
from cnnray.promote import Ledger, judge, open_ledger
from cnnray.promote.options import PromoteOptions
from cnnray.promote.rule import KEEP, PROMOTE
from cnnray.promote.stats import binary_bootstrap, mcnemar_better, paired_bootstrap


def test_equal_shares_spend_exactly_alpha_over_the_planned_decisions():
    led = Ledger("f" * 64, alpha=0.05, planned=20)
    levels = []
    while not led.exhausted:
        levels.append(led.next_level())
        led = led.after_decision(levels[-1])
    assert len(levels) == 20 and led.decisions == 20
    assert levels == pytest.approx([0.0025] * 20)
    assert sum(levels) == pytest.approx(0.05) and led.spent <= 0.05 + 1e-12
    with pytest.raises(ValueError, match="spent"):
        led.next_level()


def test_a_ledger_round_trips_and_its_budget_is_fixed_by_the_first_decision():
    led = Ledger("a" * 64, 0.05, 4).after_decision(0.0125)
    back = Ledger.from_json(led.to_json())
    assert back == led and back.remaining == pytest.approx(0.0375)
    assert open_ledger(back, "a" * 64, None, None) is back
    assert open_ledger(back, "a" * 64, 0.05, 4) is back  # the same values given explicitly
    with pytest.raises(ValueError, match="--alpha 0.1 differs"):
        open_ledger(back, "a" * 64, 0.1, None)  # a larger budget after a look would break the promise
    with pytest.raises(ValueError, match="--decisions 40 differs"):
        open_ledger(back, "a" * 64, None, 40)
    fresh = open_ledger(None, "b" * 64, 0.01, 5)
    assert (fresh.alpha, fresh.planned, fresh.decisions) == (0.01, 5, 0)
    assert open_ledger(None, "c" * 64, None, None).next_level() == pytest.approx(0.05 / 20)


def test_the_multinomial_bootstrap_matches_resampling_indices():
    rng = np.random.default_rng(0)
    n = 400
    a = rng.random(n) < 0.9
    b = np.where(rng.random(n) < 0.7, a, rng.random(n) < 0.85)
    b0, c0 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    fast = binary_bootstrap(b0, c0, n, confidence=0.9, resamples=20_000, seed=1)
    slow = paired_bootstrap(lambda i: a[i].mean(1), lambda i: b[i].mean(1), n, confidence=0.9, resamples=20_000,
                            seed=2)
    assert fast == pytest.approx(slow, abs=0.004)  # the same distribution, up to Monte Carlo error


def test_mcnemar_one_sided_by_hand():
    from math import comb

    assert mcnemar_better(0, 0) == 1.0
    assert mcnemar_better(9, 1) == pytest.approx(sum(comb(10, i) for i in (9, 10)) / 2 ** 10)
    assert mcnemar_better(1, 9) > 0.99  # the candidate is worse: never evidence for it


def _pair(n, acc_a, acc_b, seed, rho=0.5):
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    ua = np.where(rng.random(n) < rho, u, rng.random(n))
    ub = np.where(rng.random(n) < rho, u, rng.random(n))
    y = rng.integers(0, 10, n)
    pa = np.where(ua < acc_a, y, (y + 1) % 10)
    pb = np.where(ub < acc_b, y, (y + 1) % 10)
    return y, pa, pb


def test_at_a_spent_share_a_null_candidate_is_rarely_promoted_and_a_clear_win_still_is():
    promoted = 0
    for seed in range(200):
        y, pa, pb = _pair(500, 0.9, 0.9, seed)
        _, d = judge("accuracy", y, pa, pb, pa == y, pb == y, 10, level=0.0025, resamples=2000, seed=seed)
        promoted += d.outcome == PROMOTE
    assert promoted <= 3  # expected 0.5 of 200 at level 0.0025; 3 is far above what a valid test gives
    y, pa, pb = _pair(2000, 0.95, 0.85, 7)
    cmp, d = judge("accuracy", y, pa, pb, pa == y, pb == y, 10, level=0.0025, resamples=2000)
    assert d.outcome == PROMOTE and cmp.level == pytest.approx(0.0025) and cmp.p_better < 0.0025, d.reason


def test_the_exact_test_vetoes_an_optimistic_bound():
    # 4 wins, 0 losses in 300: every bootstrap resample keeps delta >= 0 and most are > 0, but an exact
    # one-sided test of 4/4 has p = 1/16: not evidence at a small level.
    y = np.zeros(300, np.int64)
    pa, pb = y.copy(), y.copy()
    pb[:4] = 1
    cmp, d = judge("accuracy", y, pa, pb, pa == y, pb == y, 10, level=0.01, resamples=2000)
    assert cmp.p_better == pytest.approx(1 / 16) and d.outcome == KEEP
    assert "exact test does not reject" in d.reason or "does not lie above" in d.reason


@pytest.mark.parametrize(("kw", "needle"), [
    ({"split": "val"}, "--allow-selection-split"),
    ({"split": "train"}, "selected on its train split"),
    ({"split": "holdout"}, "valid splits: test, val, train"),
    ({"confidence": 0.95}, "--confidence was replaced by --alpha"),
    ({"alpha": 0.5}, "--alpha must lie in (0, 0.5)"),
    ({"alpha": 0.0}, "--alpha must lie in (0, 0.5)"),
    ({"decisions": 0}, "--decisions must lie in [1, 10000]"),
    ({"resamples": 500}, "--resamples must be at least 1000"),
])
def test_options_refuse_with_the_reason(kw, needle):
    with pytest.raises(UserInputError) as e:
        PromoteOptions("http://127.0.0.1:1", **kw).validate()
    assert needle in str(e.value)


def test_a_selection_split_is_allowed_only_when_asked():
    PromoteOptions("http://127.0.0.1:1", split="val", allow_selection_split=True).validate()
    opt = PromoteOptions("http://127.0.0.1:1")
    opt.validate()
    assert opt.split == "test" and opt.held_out
