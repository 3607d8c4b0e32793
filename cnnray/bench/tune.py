"""`cnnray bench tune`: ASHA against FIFO on the same space, samples and seed (so the same trial configs).

Goal: ASHA's best accuracy within 0.5 points of FIFO's while spending at most a third of its trial-epochs.
Both searches also report their measured device-hours (GPU-hours, or CPU-hours on CPU), and ASHA its own estimate
of what it saved: for each trial it stopped, the epochs it did not run x that trial's mean epoch cost.
"""

from __future__ import annotations

import tempfile
from typing import Any

from cnnray.config import load_config
from cnnray.run.cost import format_hours

# Small enough for 2 cores; the search budget is what is compared, not the model.
BENCH_CONFIG = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.trial_workers=1",
                "tune.max_concurrent_trials=2", "tune.grace_period=1", "tune.reduction_factor=3",
                "tracking.enabled=false", "registry.enabled=false"]


def _search(scheduler: str, storage: str, num_samples: int, max_epochs: int, space: str, seed: int) -> dict[str, Any]:
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.tune.tuning import run_tune

    cfg = load_config(overrides=BENCH_CONFIG + [
        f"tune.scheduler={scheduler}", f"tune.num_samples={num_samples}", f"tune.max_epochs={max_epochs}",
        f"tune.seed={seed}", f"run.name=bench-{scheduler}", f"scaling.storage_path={storage}"])
    r = run_tune(cfg, space_ref=space, on_line=lambda s: None)
    if r["status"] != "FINISHED":
        raise RuntimeError(f"{scheduler} search {r['status']}: {r.get('error')}")
    cost = r["cost"]
    return {"best_val_acc": r["best"]["value"], "trial_epochs": r["trial_epochs"], "wall_seconds": r["wall_seconds"],
            "stopped_early": r["counts"]["stopped_early"], "best_trial": r["best"]["trial_id"],
            "device_hours": cost["device_hours"], "saved_device_hours": cost["saved_device_hours"],
            "device_kind": cost["device_kind"]}


def run_tune_bench(num_samples: int = 8, max_epochs: int = 6, space: str = "default", seed: int = 0) -> dict[str, Any]:
    """Run the same search with ASHA and with FIFO; best accuracies and the ratio of trial-epochs used."""
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-tune-") as storage:
        asha = _search("asha", storage, num_samples, max_epochs, space, seed)
        fifo = _search("fifo", storage, num_samples, max_epochs, space, seed)
    gap = 100 * (fifo["best_val_acc"] - asha["best_val_acc"])
    ratio = asha["trial_epochs"] / max(fifo["trial_epochs"], 1)
    return {"num_samples": num_samples, "max_epochs": max_epochs, "space": space, "seed": seed,
            "asha": asha, "fifo": fifo, "acc_gap_points": round(gap, 2), "trial_epoch_ratio": round(ratio, 3),
            "wall_ratio": round(asha["wall_seconds"] / max(fifo["wall_seconds"], 1e-9), 3),
            "device_hour_ratio": round(asha["device_hours"] / max(fifo["device_hours"], 1e-12), 3),
            # Measured: what FIFO spent beyond ASHA on the same trial configs (ASHA's own estimate is asha's).
            "saved_device_hours_measured": fifo["device_hours"] - asha["device_hours"],
            "goal_met": gap <= 0.5 and ratio <= 1 / 3}


def format_tune_bench(r: dict[str, Any]) -> str:
    """A few lines: both best accuracies, the accuracy gap and the trial-epoch ratio against the goal, and ASHA's
    saving in device-hours."""
    a, f = r["asha"], r["fifo"]
    unit = "GPU-hours" if a.get("device_kind") == "gpu" else "CPU-hours"
    return "\n".join([
        f"space '{r['space']}', {r['num_samples']} samples, {r['max_epochs']} epochs max, seed {r['seed']}",
        f"FIFO  best val_acc {100 * f['best_val_acc']:.2f}%  {f['trial_epochs']} trial-epochs  {f['wall_seconds']:.0f}s",
        f"ASHA  best val_acc {100 * a['best_val_acc']:.2f}%  {a['trial_epochs']} trial-epochs  {a['wall_seconds']:.0f}s"
        f"  ({a['stopped_early']} trials stopped early)",
        f"ASHA/FIFO: accuracy gap {r['acc_gap_points']:+.2f} points, trial-epochs x{r['trial_epoch_ratio']:.2f}, "
        f"wall time x{r['wall_ratio']:.2f}  (goal: gap <= 0.5, epochs <= x0.33: "
        f"{'met' if r['goal_met'] else 'not met'})",
        f"device cost: FIFO {format_hours(f['device_hours'])} {unit}, ASHA {format_hours(a['device_hours'])} {unit} "
        f"(x{r['device_hour_ratio']:.2f}); ASHA saved {format_hours(a['saved_device_hours'])} {unit} by its own "
        f"estimate (stopped trials' missing epochs x their mean epoch cost), "
        f"{format_hours(r['saved_device_hours_measured'])} {unit} measured against FIFO",
    ])


# --- `cnnray bench tune --overhead N`: what a trial costs beyond its epochs, by where it trains.

OVERHEAD_VARIANTS = {  # label -> overrides
    "actor, 1 worker": ["tune.trial_runner=actor", "tune.trial_workers=1"],
    "actor, 2 workers": ["tune.trial_runner=actor", "tune.trial_workers=2"],
    "Train run, 1 worker": ["tune.trial_runner=train", "tune.trial_workers=1"],
    "Train run, 2 workers": ["tune.trial_runner=train", "tune.trial_workers=2"],
}


def _overhead_search(label: str, extra: list[str], storage: str, n: int) -> dict[str, Any]:
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.tune.tuning import run_tune

    name = "overhead-" + "".join(c if c.isalnum() else "-" for c in label).strip("-")
    cfg = load_config(overrides=[
        "data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.max_concurrent_trials=2",
        "tune.scheduler=fifo", "tune.max_epochs=1", f"tune.num_samples={n}", "registry.enabled=false",
        f"tracking.uri=sqlite:///{storage}/mlflow.db", f"run.name={name}", f"scaling.storage_path={storage}", *extra])
    r = run_tune(cfg, on_line=lambda s: None)
    if r["status"] != "FINISHED" or "trial_overhead" not in r:
        raise RuntimeError(f"{label} search {r['status']}: {r.get('error')}")
    return {**r["trial_overhead"], "wall_seconds": r["wall_seconds"]}


def run_overhead_bench(n: int = 8, variants: list[str] | None = None) -> dict[str, Any]:
    """The same FIFO search of `n` one-epoch trials (MLflow child run each), trained in the trial's actor
    (with its kept rank actors for 2 workers) and as Ray Train runs of 1 and 2 workers: per-trial overhead
    and trials per minute of each."""
    out: dict[str, Any] = {"trials": n, "concurrent": 2, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-overhead-") as storage:
        for label in variants or list(OVERHEAD_VARIANTS):
            out["variants"][label] = _overhead_search(label, OVERHEAD_VARIANTS[label], storage, n)
    v = out["variants"]
    if "actor, 1 worker" in v and "Train run, 1 worker" in v:
        out["train_over_actor_overhead"] = round(v["Train run, 1 worker"]["median_s"]
                                                 / max(v["actor, 1 worker"]["median_s"], 1e-3), 1)
    return out


def format_overhead_bench(r: dict[str, Any]) -> str:
    """One line per variant: median/max overhead per trial, epoch time, trials per minute (goals: 2 s / 5 s)."""
    lines = [f"{r['trials']} one-epoch trials per search, {r['concurrent']} at a time, FIFO, MLflow child runs on"]
    for label, v in r["variants"].items():
        goal = 5.0 if "2 workers" in label else 2.0
        lines.append(f"{label:<22} overhead median {v['median_s']:5.1f}s max {v['max_s']:5.1f}s  (goal <= {goal:.0f}s: "
                     f"{'met' if v['median_s'] <= goal else 'not met'})  epochs {v['mean_work_s']:.1f}s/trial  "
                     f"{v['trials_per_minute']:.1f} trials/min  search {v['wall_seconds']:.0f}s")
    if "train_over_actor_overhead" in r:
        lines.append(f"Train-run trial overhead / actor trial overhead (1 worker): x{r['train_over_actor_overhead']}")
    return "\n".join(lines)
