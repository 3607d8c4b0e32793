"""`cnnray bench tune`: ASHA against FIFO on the same space, samples and seed (so the same trial configs).

Goal: ASHA's best accuracy within 0.5 points of FIFO's while spending at most a third of its trial-epochs.
"""

from __future__ import annotations

import tempfile
from typing import Any

from cnnray.config import load_config

# Small enough for 2 cores; the search budget is what is compared, not the model.
BENCH_CONFIG = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.trial_workers=1",
                "tune.max_concurrent_trials=2", "tune.grace_period=1", "tune.reduction_factor=3",
                "tracking.enabled=false", "registry.enabled=false"]


def _search(scheduler: str, storage: str, num_samples: int, max_epochs: int, space: str, seed: int) -> dict[str, Any]:
    from cnnray.tune.runner import run_tune

    cfg = load_config(overrides=BENCH_CONFIG + [
        f"tune.scheduler={scheduler}", f"tune.num_samples={num_samples}", f"tune.max_epochs={max_epochs}",
        f"tune.seed={seed}", f"run.name=bench-{scheduler}", f"scaling.storage_path={storage}"])
    r = run_tune(cfg, space_ref=space, on_line=lambda s: None)
    if r["status"] != "FINISHED":
        raise RuntimeError(f"{scheduler} search {r['status']}: {r.get('error')}")
    return {"best_val_acc": r["best"]["value"], "trial_epochs": r["trial_epochs"], "wall_seconds": r["wall_seconds"],
            "stopped_early": r["counts"]["stopped_early"], "best_trial": r["best"]["trial_id"]}


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
            "goal_met": gap <= 0.5 and ratio <= 1 / 3}


def format_tune_bench(r: dict[str, Any]) -> str:
    """A few lines: both best accuracies, the accuracy gap and the trial-epoch ratio against the goal."""
    a, f = r["asha"], r["fifo"]
    return "\n".join([
        f"space '{r['space']}', {r['num_samples']} samples, {r['max_epochs']} epochs max, seed {r['seed']}",
        f"FIFO  best val_acc {100 * f['best_val_acc']:.2f}%  {f['trial_epochs']} trial-epochs  {f['wall_seconds']:.0f}s",
        f"ASHA  best val_acc {100 * a['best_val_acc']:.2f}%  {a['trial_epochs']} trial-epochs  {a['wall_seconds']:.0f}s"
        f"  ({a['stopped_early']} trials stopped early)",
        f"ASHA/FIFO: accuracy gap {r['acc_gap_points']:+.2f} points, trial-epochs x{r['trial_epoch_ratio']:.2f}, "
        f"wall time x{r['wall_ratio']:.2f}  (goal: gap <= 0.5, epochs <= x0.33: "
        f"{'met' if r['goal_met'] else 'not met'})",
    ])
