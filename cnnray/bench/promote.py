"""`cnnray bench promote`: the promotion gate's false-promotion rate and power, simulated on its own code.

Every decision goes through `cnnray.promote.rule.judge` (the paired bootstrap bound and McNemar's exact
one-sided test, what `cnnray promote` runs) at the levels `cnnray.promote.spending.Ledger` hands out; nothing
of the rule is re-implemented here. What is simulated is the models: per-example predictions drawn under a
known truth, correlated between models like real ones are. Each split has a shared per-example latent
u_i ~ U(0,1); model m uses u_i with probability rho, else its own v_mi ~ U(0,1), and is right iff that
uniform < p_m (so its accuracy is exactly p_m in expectation; two models disagree on
2 p (1 - p) (1 - rho^2) of the examples). A wrong prediction is a uniformly drawn other class.

Rows under the null (every candidate exactly as good as the champion): one decision; 20 decisions one
after another on the same test examples (family-wise: P(any promotion), stopping at the first, the champion
unchanged until then); and best-of-K searches whose winner (highest accuracy on the selection split, "val")
is judged on that same split (the old way) or on an independent held-out test split (the gate's way). Each
is run with the spending rule (the Ledger's levels: alpha / planned per decision) and with the old fixed
rule (every decision at one-sided 0.025, a 95% two-sided interval's lower bound). Then power: the share of
decisions promoting a candidate truly +1 or +2 accuracy points better, at the first decision's level and
at 0.025.

The gate's accuracy decision reads the examples only through n, the discordant counts (b, c) and the two
accuracies (`stats.compare`: the bootstrap is drawn from (b, c, n), McNemar from (b, c), the floor from the
candidate's accuracy). So the simulation memoizes `judge`'s verdict per (n, b, c, champion's correct count,
level); the first VERIFY cache hits of a run call `judge` again on the actual predictions and fail loudly on
any disagreement, so a rule that starts to read more than these numbers cannot go unnoticed. The cache is
what makes the gate's own resamples=10000 affordable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnray.promote.rule import judge
from cnnray.promote.spending import DEFAULT_ALPHA, DEFAULT_PLANNED, Ledger

FIXED_LEVEL = 0.025  # the old rule: a 95% two-sided interval's lower bound, every decision
NUM_CLASSES = 10
RHO = 0.5  # probability a model's per-example uniform is the shared one
P_CHAMP = 0.90
N_TEST = 2000
ISSUE = {"p": 0.97, "n": 360}  # the issue's setting: a 360-image selection split at 97%
KS = (1, 8, 64)
SEQUENTIAL = DEFAULT_PLANNED  # decisions on one test set in the family-wise rows
POWER_DELTAS = (0.01, 0.02)
POWER_NS = (500, 2000, 10_000)
RESAMPLES = {False: 10_000, True: 2000}  # quick -> bootstrap resamples (10000: the gate's default)
REPS = {False: (2000, 1000), True: (200, 200)}  # quick -> (null rows, power rows)
VERIFY = 300  # cache hits re-judged from the predictions themselves in each run


@dataclass
class _Gate:
    """`judge` on the accuracy metric with its verdict memoized per sufficient statistic (see module doc)."""

    resamples: int
    cache: dict[tuple[int, int, int, float], bool] = field(default_factory=dict)
    calls: int = 0
    hits: int = 0
    verified: int = 0

    def promotes(self, labels: np.ndarray, pred_cand: np.ndarray, pred_champ: np.ndarray, level: float) -> bool:
        cand, champ = pred_cand == labels, pred_champ == labels
        key = (len(labels), int(np.sum(cand & ~champ)), int(np.sum(~cand & champ)), float(level))
        self.calls += 1
        cached = self.cache.get(key)
        if cached is not None and self.verified >= VERIFY:
            self.hits += 1
            return cached
        _, decision = judge("accuracy", labels, pred_cand, pred_champ, cand, champ, NUM_CLASSES, level=level,
                            resamples=self.resamples, seed=0)
        if cached is not None:
            self.hits += 1
            self.verified += 1
            if cached != decision.promote:
                raise RuntimeError(f"bench promote: the gate's decision on n, b, c, champion correct = {key[:3]} "
                                   "differs between two sets of predictions; the memo in cnnray/bench/promote.py "
                                   "no longer matches the rule (make its key cover what the rule reads)")
        self.cache[key] = decision.promote
        return decision.promote


def _latent(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random(n)


def _correct(rng: np.random.Generator, u: np.ndarray, p: float, models: int, rho: float) -> np.ndarray:
    """(models, n) correctness: each model's uniform is the shared u with probability rho, else its own."""
    own = rng.random((models, len(u)))
    w = np.where(rng.random((models, len(u))) < rho, u[None, :], own)
    return w < p


def _predictions(rng: np.random.Generator, labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Class predictions: the label where right, a uniformly drawn other class where wrong."""
    other = (labels + rng.integers(1, NUM_CLASSES, size=correct.shape)) % NUM_CLASSES
    return np.where(correct, labels, other)


def _rate(hits: int, reps: int) -> dict[str, float]:
    r = hits / reps
    return {"rate": r, "se": math.sqrt(r * (1 - r) / reps), "promotions": hits}


def _first_level(alpha: float, planned: int) -> float:
    return Ledger("bench", alpha, planned).next_level()


def _sequential(gate: _Gate, rng: np.random.Generator, reps: int, p: float, n: int, decisions: int, rho: float,
                alpha: float, planned: int) -> dict[str, Any]:
    """P(at least one of `decisions` no-better candidates, judged one after another on one test set, is promoted)."""
    spend_hits = fixed_hits = 0
    for _ in range(reps):
        u = _latent(rng, n)
        labels = rng.integers(0, NUM_CLASSES, n)
        preds = _predictions(rng, labels, _correct(rng, u, p, decisions + 1, rho))
        champ = preds[0]
        ledger = Ledger("bench", alpha, planned)
        for k in range(decisions):
            level = ledger.next_level()
            ledger = ledger.after_decision(level)
            if gate.promotes(labels, preds[k + 1], champ, level):
                spend_hits += 1
                break
        for k in range(decisions):
            if gate.promotes(labels, preds[k + 1], champ, FIXED_LEVEL):
                fixed_hits += 1
                break
    return {"spending": _rate(spend_hits, reps), "fixed": _rate(fixed_hits, reps)}


def _best_of(gate: _Gate, rng: np.random.Generator, reps: int, k: int, p: float, n_sel: int, n_test: int, rho: float,
             level: float) -> dict[str, dict[str, Any]]:
    """Best of k no-better candidates by selection-split accuracy, judged on that split and on the test split."""
    hits = {("val", "spending"): 0, ("val", "fixed"): 0, ("test", "spending"): 0, ("test", "fixed"): 0}
    for _ in range(reps):
        u = _latent(rng, n_sel)
        labels = rng.integers(0, NUM_CLASSES, n_sel)
        ok = _correct(rng, u, p, k + 1, rho)  # row 0: the champion
        win = 1 + int(np.argmax(ok[1:].sum(axis=1)))
        preds = _predictions(rng, labels, ok[[0, win]])
        # the winner's test examples are new: its correctness there is a fresh draw, independent of its val luck
        ut = _latent(rng, n_test)
        labels_t = rng.integers(0, NUM_CLASSES, n_test)
        preds_t = _predictions(rng, labels_t, _correct(rng, ut, p, 2, rho))
        for split, (y, pr) in (("val", (labels, preds)), ("test", (labels_t, preds_t))):
            hits[(split, "spending")] += gate.promotes(y, pr[1], pr[0], level)
            hits[(split, "fixed")] += gate.promotes(y, pr[1], pr[0], FIXED_LEVEL)
    return {split: {"spending": _rate(hits[(split, "spending")], reps), "fixed": _rate(hits[(split, "fixed")], reps)}
            for split in ("val", "test")}


def _power(gate: _Gate, rng: np.random.Generator, reps: int, p: float, delta: float, n: int, rho: float,
           level: float) -> dict[str, Any]:
    """Share of single decisions promoting a candidate whose true accuracy is p + delta."""
    spend = fixed = 0
    for _ in range(reps):
        u = _latent(rng, n)
        labels = rng.integers(0, NUM_CLASSES, n)
        champ = _predictions(rng, labels, _correct(rng, u, p, 1, rho))[0]
        cand = _predictions(rng, labels, _correct(rng, u, p + delta, 1, rho))[0]
        spend += gate.promotes(labels, cand, champ, level)
        fixed += gate.promotes(labels, cand, champ, FIXED_LEVEL)
    return {"spending": _rate(spend, reps), "fixed": _rate(fixed, reps)}


def _null_row(name: str, split: str, k: int, decisions: int, p: float, n_sel: int | None, n: int, reps: int,
              rates: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "split": split, "k": k, "decisions": decisions, "p": p, "n_select": n_sel, "n": n,
            "reps": reps, **rates}


def run_promote_bench(quick: bool = False, seed: int = 0, rho: float = RHO, p: float = P_CHAMP,
                      alpha: float = DEFAULT_ALPHA, planned: int = DEFAULT_PLANNED,
                      resamples: int | None = None) -> dict[str, Any]:
    """Simulate the gate under the null and under true gains; returns every row's rates and the goals.

    quick: 200 replications per row and 2000 bootstrap resamples (seconds); otherwise 2000 per null row,
    1000 per power row and the gate's 10000 resamples (under a minute).
    """
    t0 = time.perf_counter()
    reps_null, reps_power = REPS[bool(quick)]
    resamples = RESAMPLES[bool(quick)] if resamples is None else resamples
    gate = _Gate(resamples)
    level = _first_level(alpha, planned)
    streams = iter(np.random.SeedSequence(seed).spawn(64))  # one stream per row: rows do not depend on each other

    def rng() -> np.random.Generator:
        return np.random.default_rng(next(streams))

    null: list[dict[str, Any]] = []
    for k in KS:
        r = _best_of(gate, rng(), reps_null, k, p, N_TEST, N_TEST, rho, level)
        for split in ("test", "val"):
            name = "one decision" if k == 1 else f"best of {k}"
            null.append(_null_row(name, split, k, 1, p, N_TEST, N_TEST, reps_null, r[split]))
    r = _best_of(gate, rng(), reps_null, 8, ISSUE["p"], ISSUE["n"], ISSUE["n"], rho, level)
    for split in ("test", "val"):
        null.append(_null_row("best of 8 (issue)", split, 8, 1, ISSUE["p"], ISSUE["n"], ISSUE["n"], reps_null,
                              r[split]))
    for p_row, n_row, name in ((p, N_TEST, f"{SEQUENTIAL} in a row"), (ISSUE["p"], ISSUE["n"],
                                                                       f"{SEQUENTIAL} in a row (issue)")):
        r = _sequential(gate, rng(), reps_null, p_row, n_row, SEQUENTIAL, rho, alpha, planned)
        null.append(_null_row(name, "test", 1, SEQUENTIAL, p_row, None, n_row, reps_null, r))

    power: list[dict[str, Any]] = []
    for delta in POWER_DELTAS:
        for n in POWER_NS:
            r = _power(gate, rng(), reps_power, p, delta, n, rho, level)
            power.append({"delta": delta, "p_champion": p, "p_candidate": round(p + delta, 6), "n": n,
                          "reps": reps_power, **r})

    goals = []
    for row in null:
        if row["split"] != "test":
            continue
        s = row["spending"]
        bound = alpha + 2 * s["se"]
        goals.append({"row": f"{row['name']} on test", "rate": s["rate"], "se": s["se"], "bound": bound,
                      "pass": s["rate"] <= bound})
    return {"settings": {"alpha": alpha, "planned": planned, "first_level": level, "fixed_level": FIXED_LEVEL,
                         "rho": rho, "num_classes": NUM_CLASSES, "resamples": resamples, "seed": seed,
                         "quick": bool(quick), "reps_null": reps_null, "reps_power": reps_power,
                         "judge_calls": gate.calls, "judge_run": gate.calls - gate.hits + gate.verified,
                         "cache_hits": gate.hits, "verified_hits": gate.verified,
                         "wall_s": time.perf_counter() - t0},
            "null": null, "power": power, "goals": goals, "all_pass": all(g["pass"] for g in goals)}


def _cell(r: dict[str, float]) -> str:
    return f"{r['rate']:.4f} ± {r['se']:.4f}"


def format_promote_bench(r: dict[str, Any]) -> str:
    """The tables: false promotions under the null, power, the goals."""
    s = r["settings"]
    quick = " (quick)" if s["quick"] else ""
    first = format(s["first_level"], ".4g")
    lines = [
        (f"promotion gate simulated on its own code (rule.judge, spending.Ledger): accuracy, {s['num_classes']} "
         f"classes, rho={s['rho']} shared latent, bootstrap resamples={s['resamples']}, seed={s['seed']}{quick}"),
        (f"with spending: alpha={s['alpha']} over {s['planned']} decisions (Ledger levels, the first {first}); "
         f"fixed 0.025: every decision at {s['fixed_level']} one-sided (a 95% two-sided interval's lower bound)"),
        "",
        "false promotions under the null (candidates exactly as good as the champion): rate ± Monte Carlo SE",
        (f"  {'row':<24} {'judged on':<9} {'K':>3} {'dec':>4} {'acc':>5} {'n select':>8} {'n judged':>8} "
         f"{'R':>5}  {'with spending':>16}  {'fixed 0.025':>16}"),
    ]
    for row in r["null"]:
        n_sel = "-" if row["n_select"] is None else str(row["n_select"])
        lines.append(f"  {row['name']:<24} {row['split']:<9} {row['k']:>3} {row['decisions']:>4} {row['p']:>5.2f} "
                     f"{n_sel:>8} {row['n']:>8} {row['reps']:>5}  {_cell(row['spending']):>16}  "
                     f"{_cell(row['fixed']):>16}")
    lines += [
        ("  K: candidates searched, the winner picked by val accuracy; dec: decisions on one test set (stop at the "
         "first promotion)"),
        ("  val rows: judged on the split the winner was picked on; `cnnray promote` refuses that unless "
         "--allow-selection-split"),
        "",
    ]
    if r["power"]:
        lines += [
            (f"power: share of single decisions promoting a truly better candidate (champion at "
             f"{r['power'][0]['p_champion']:.2f}): rate ± Monte Carlo SE"),
            (f"  {'true gain':>9} {'acc':>5} {'n test':>7} {'R':>5}  {'level ' + first:>16}  "
             f"{'level 0.025':>16}"),
        ]
    for row in r["power"]:
        lines.append(f"  {row['delta'] * 100:>+7.0f}pt {row['p_candidate']:>5.2f} {row['n']:>7} {row['reps']:>5}  "
                     f"{_cell(row['spending']):>16}  {_cell(row['fixed']):>16}")
    lines += ["", (f"goals: false-promotion rate <= alpha={s['alpha']} on test with spending "
                   "(PASS when rate <= alpha + 2 SE)")]
    for g in r["goals"]:
        lines.append(f"  {g['row']:<36} {g['rate']:.4f} ± {g['se']:.4f} <= {g['bound']:.4f}  "
                     f"{'PASS' if g['pass'] else 'FAIL'}")
    lines.append(f"judge: {s['judge_calls']} decisions, {s['judge_run']} run through judge ({s['cache_hits']} memo "
                 f"hits, {s['verified_hits']} of them re-judged and matched); {s['wall_s']:.1f}s")
    return "\n".join(lines)
