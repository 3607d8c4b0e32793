"""`cnnray bench promote`: the gate's false-promotion rates and power, simulated on its own code (no Ray, no MLflow).

One quick run through the CLI (seconds) feeds every check; the rates are deterministic for the fixed seed, and
each bound leaves Monte Carlo room (SE at R=200) so a change of the rule's noise does not flip it needlessly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

ALPHA = 0.05


@pytest.fixture(scope="module")
def quick_cli():
    proc = subprocess.run([sys.executable, "-m", "cnnray.cli", "bench", "promote", "--quick", "--json"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])["promote"]
    return proc.stdout, result


def _row(result, name, split):
    (row,) = [r for r in result["null"] if r["name"] == name and r["split"] == split]
    return row


@pytest.mark.timeout(180)
def test_cli_prints_the_table_and_every_row(quick_cli):
    stdout, r = quick_cli
    assert "== bench promote" in stdout and "false promotions under the null" in stdout and "power:" in stdout
    assert "PASS" in stdout and "FAIL" not in stdout and r["all_pass"]
    names = {(row["name"], row["split"]) for row in r["null"]}
    for name in ("one decision", "best of 8", "best of 64", "best of 8 (issue)"):
        assert {(name, "test"), (name, "val")} <= names
    assert {("20 in a row", "test"), ("20 in a row (issue)", "test")} <= names
    issue = _row(r, "best of 8 (issue)", "val")
    assert (issue["p"], issue["n_select"], issue["k"]) == (0.97, 360, 8)
    assert {(p["delta"], p["n"]) for p in r["power"]} == {(d, n) for d in (0.01, 0.02) for n in (500, 2000, 10_000)}
    s = r["settings"]
    assert s["quick"] and s["reps_null"] == 200 and s["reps_power"] == 200 and s["first_level"] == pytest.approx(0.0025)
    assert s["verified_hits"] > 0 and s["judge_run"] <= s["judge_calls"]
    assert f"resamples={s['resamples']}" in stdout and " 360 " in stdout and "0.97" in stdout


def test_null_on_test_with_spending_keeps_alpha(quick_cli):
    _, r = quick_cli
    test_rows = [row for row in r["null"] if row["split"] == "test"]
    assert len(test_rows) == 6
    for row in test_rows:
        s = row["spending"]
        assert s["rate"] <= ALPHA + 3 * max(s["se"], np.sqrt(ALPHA * (1 - ALPHA) / row["reps"])), row


def test_twenty_in_a_row_without_spending_promotes_far_more(quick_cli):
    _, r = quick_cli
    for name in ("20 in a row", "20 in a row (issue)"):
        row = _row(r, name, "test")
        assert row["decisions"] == 20
        assert row["fixed"]["rate"] > 2 * row["spending"]["rate"] + 0.05, row


def test_selection_split_inflates_the_best_of_64(quick_cli):
    _, r = quick_cli
    val, test = _row(r, "best of 64", "val"), _row(r, "best of 64", "test")
    for rule in ("spending", "fixed"):
        assert val[rule]["rate"] > test[rule]["rate"], (rule, val, test)
    assert val["fixed"]["rate"] > test["fixed"]["rate"] + 0.1


def test_power_rises_with_n(quick_cli):
    _, r = quick_cli
    for delta in (0.01, 0.02):
        rows = sorted((p for p in r["power"] if p["delta"] == delta), key=lambda p: p["n"])
        for rule in ("spending", "fixed"):
            rates = [p[rule]["rate"] for p in rows]
            assert rates[0] < rates[-1] and rates == sorted(rates), (delta, rule, rates)
        assert all(p["fixed"]["rate"] >= p["spending"]["rate"] for p in rows)


def test_the_memo_gives_the_gates_own_verdict():
    """The memo's key (n, b, c, level) is all the gate's accuracy verdict reads: other examples, another order and
    another shared accuracy with the same discordant counts get the same verdict from `judge` itself."""
    from cnnray.bench.promote import NUM_CLASSES, VERIFY, _correct, _Gate, _predictions
    from cnnray.promote.rule import judge

    def verdict(labels, cand, champ, level):
        return judge("accuracy", labels, cand, champ, cand == labels, champ == labels, NUM_CLASSES, level=level,
                     resamples=1000, seed=0)[1].promote

    rng = np.random.default_rng(1)
    gate = _Gate(resamples=1000)
    gate.verified = VERIFY  # serve hits from the memo
    promoted = 0
    for _ in range(30):
        n = int(rng.choice([150, 400]))
        labels = rng.integers(0, NUM_CLASSES, n)
        u = rng.random(n)
        champ = _predictions(rng, labels, _correct(rng, u, 0.85, 1, 0.5))[0]
        cand = _predictions(rng, labels, _correct(rng, u, float(rng.choice([0.85, 0.95])), 1, 0.5))[0]
        level = float(rng.choice([0.0025, 0.025]))
        want = verdict(labels, cand, champ, level)
        promoted += want
        assert gate.promotes(labels, cand, champ, level) == want
        # same (n, b, c): shuffled, and both models wrong where both were right on a fifth of the examples
        order = rng.permutation(n)
        y2, c2, h2 = labels[order], cand[order].copy(), champ[order].copy()
        both = np.flatnonzero((c2 == y2) & (h2 == y2))[: n // 5]
        c2[both] = h2[both] = (y2[both] + 1) % NUM_CLASSES
        assert verdict(y2, c2, h2, level) == want
        assert gate.promotes(y2, c2, h2, level) == want and gate.hits >= 1
    assert 0 < promoted < 30


def test_format_names_rates_and_goals():
    from cnnray.bench.promote import format_promote_bench

    rate = {"rate": 0.1, "se": 0.02, "promotions": 20}
    r = {"settings": {"alpha": 0.05, "planned": 20, "first_level": 0.0025, "fixed_level": 0.025, "rho": 0.5,
                      "num_classes": 10, "resamples": 2000, "seed": 0, "quick": True, "reps_null": 200,
                      "reps_power": 200, "judge_calls": 10, "judge_run": 5, "cache_hits": 5, "verified_hits": 1,
                      "wall_s": 1.0},
         "null": [{"name": "best of 8 (issue)", "split": "val", "k": 8, "decisions": 1, "p": 0.97, "n_select": 360,
                   "n": 360, "reps": 200, "spending": rate, "fixed": rate}],
         "power": [{"delta": 0.02, "p_champion": 0.9, "p_candidate": 0.92, "n": 500, "reps": 200, "spending": rate,
                    "fixed": rate}],
         "goals": [{"row": "x on test", "rate": 0.1, "se": 0.02, "bound": 0.09, "pass": False}], "all_pass": False}
    text = format_promote_bench(r)
    assert "0.1000 ± 0.0200" in text and "FAIL" in text and "best of 8 (issue)" in text and "+2pt" in text
    assert "resamples=2000" in text and "(quick)" in text
