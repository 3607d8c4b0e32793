"""`cnnray bench transfer`: what starting from trained weights buys, measured in one command.

1. Transfer across classes: pretrain on digits 0-4, then fine-tune on digits 5-9 with 10% of their training
   images, from the pretrained weights (`model.init_from`: a new head, the backbone kept) and from scratch,
   the same recipe and budget of epochs. Printed: both accuracies and the epochs each needs to reach the
   scratch run's final (best) accuracy.
2. The tutorial's recipe (`--config tutorial`: backbone lr 1e-4, head lr 1e-3, written for pretrained
   layers; its 30 epochs with early stopping) started from the weights of `cnnray train` on digits vs from
   random weights: its time to 99%.

Every run is `cnnray train`'s own code path (local runner, tracking off) on image folders written from
scikit-learn's digits in a temporary directory; val accuracy is what each epoch reports.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnray.config import load_config

TARGET = 0.99  # the tutorial's goal on digits
COMMON = ["scaling.runner=local", "tracking.enabled=false", "train.precision=fp32"]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    # deferred (heavy import): scikit-learn
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255.0 / 16.0)).round().astype(np.uint8), d.target.astype(np.int64)


def _write(root: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    # deferred (heavy import): PIL
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y)):
        d = root / split / str(int(label))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def _halves(root: Path, fraction: float, seed: int = 0) -> tuple[Path, Path, int]:
    """Folders: A = digits 0-4 (train/ only: cnnray splits val and test off it); B = digits 5-9 with its own
    val/ and test/ and `fraction` of its training images in train/ (stratified). Returns (A, B, B's train count)."""
    x, y = _digits()
    rng = np.random.default_rng(seed)
    a = y < 5
    _write(root / "A", "train", x[a], y[a])
    train_idx, val_idx, test_idx = [], [], []
    for c in range(5, 10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = n_test = round(0.15 * len(idx))
        val_idx += list(idx[:n_val])
        test_idx += list(idx[n_val:n_val + n_test])
        pool = idx[n_val + n_test:]
        train_idx += list(pool[:max(2, round(fraction * len(pool)))])
    for split, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        _write(root / "B", split, x[idx], y[idx])
    return root / "A", root / "B", len(train_idx)


def _run(overrides: list[str], storage: Path, name: str, config: str | None = None) -> dict[str, Any]:
    """One `cnnray train` (its result, plus per-epoch val_acc and seconds since the call)."""
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.run.training import run_training

    cfg = load_config(config, overrides=[*COMMON, *overrides, f"scaling.storage_path={storage}", f"run.name={name}"])
    curve: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def on_report(m: dict[str, Any]) -> None:
        if "val_acc" in m:
            curve.append((float(m["val_acc"]), time.perf_counter() - t0))

    result = run_training(cfg, on_line=lambda line: None, on_report=on_report)
    if result["status"] != "FINISHED":
        raise RuntimeError(f"bench transfer: run {name} ended {result['status']}: {result.get('error')}")
    return {**result, "curve": curve, "seconds": time.perf_counter() - t0}


def _best_weights_file(result: dict[str, Any], path: Path) -> Path:
    # deferred (heavy import): torch
    import torch

    from cnnray.run.outcome import load_best

    weights, _ = load_best(result["checkpoint"])
    torch.save(weights, path)
    return path


def _first_reaching(curve: list[tuple[float, float]], target: float) -> tuple[int | None, float | None]:
    """(epochs, seconds) until val_acc first reached `target`; (None, None) if it never did."""
    for epoch, (acc, at) in enumerate(curve, start=1):
        if acc >= target - 1e-12:
            return epoch, at
    return None, None


def _transfer(root: Path, quick: bool) -> dict[str, Any]:
    a, b, n_train = _halves(root / "data", 0.1)
    small = ["data.image_size=16", "model.width=0.125"] if quick else ["data.image_size=16"]
    pre_epochs, epochs = (2, 3) if quick else (8, 15)
    pretrained = _run([*small, "data.source=imagefolder", f"data.path={a}", f"train.epochs={pre_epochs}",
                       "scaling.num_workers=1"], root / "runs", "pretrain-0-4")
    weights = _best_weights_file(pretrained, root / "pretrained-0-4.pt")
    fine = [*small, "data.source=imagefolder", f"data.path={b}", f"train.epochs={epochs}", "scaling.num_workers=1",
            "train.batch_size=16"]
    scratch = _run(fine, root / "runs", "scratch-5-9")
    warm = _run([*fine, f"model.init_from={weights}"], root / "runs", "pretrained-5-9")
    goal = max(acc for acc, _ in scratch["curve"])
    return {"train_images": n_train, "epochs": epochs, "pretrain_val_acc": max(acc for acc, _ in pretrained["curve"]),
            "scratch_val_acc": goal, "pretrained_val_acc": max(acc for acc, _ in warm["curve"]),
            "scratch_epochs_to_goal": _first_reaching(scratch["curve"], goal)[0],
            "pretrained_epochs_to_goal": _first_reaching(warm["curve"], goal)[0],
            "scratch_curve": [round(acc, 4) for acc, _ in scratch["curve"]],
            "pretrained_curve": [round(acc, 4) for acc, _ in warm["curve"]]}


def _tutorial(root: Path, quick: bool) -> dict[str, Any]:
    small = ["data.image_size=16", "model.width=0.125"] if quick else []
    base = _run([*small, *(["train.epochs=2"] if quick else [])], root / "runs", "default-job")
    weights = _best_weights_file(base, root / "default-job.pt")
    cap = 2 if quick else load_config("tutorial").train.epochs
    recipe = [*small, f"train.epochs={cap}"]
    scratch = _run(recipe, root / "runs", "tutorial-scratch", config="tutorial")
    warm = _run([*recipe, f"model.init_from={weights}"], root / "runs", "tutorial-pretrained", config="tutorial")
    # The recipe normalizes with ImageNet's statistics, the start was trained with the data's own: the same
    # start again with the start's normalization shows what that mismatch costs.
    matched = _run([*recipe, f"model.init_from={weights}", "data.normalize_stats=dataset"], root / "runs",
                   "tutorial-pretrained-matched", config="tutorial")
    out: dict[str, Any] = {"epochs_cap": cap, "default_job_val_acc": max(acc for acc, _ in base["curve"]),
                           "default_job_seconds": base["seconds"]}
    for name, run in (("scratch", scratch), ("pretrained", warm), ("pretrained_matched", matched)):
        epochs, seconds = _first_reaching(run["curve"], TARGET)
        out[name] = {"epochs_to_99": epochs, "seconds_to_99": seconds, "best_val_acc": max(a for a, _ in run["curve"]),
                     "first_val_acc": run["curve"][0][0], "epochs_run": len(run["curve"]), "seconds": run["seconds"],
                     "curve": [round(a, 4) for a, _ in run["curve"]]}
    return out


def run_transfer_bench(quick: bool = False) -> dict[str, Any]:
    """Both comparisons; `quick`: a narrow model and 2-3 epochs (a smoke run, not a measurement)."""
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-transfer-") as tmp:
        root = Path(tmp)
        return {"quick": quick, "transfer": _transfer(root, quick), "tutorial": _tutorial(root, quick)}


def _epochs(n: int | None, cap: int) -> str:
    return f"{n}" if n is not None else f"not in {cap}"


def format_transfer_bench(r: dict[str, Any]) -> str:
    """The two tables."""
    t, u = r["transfer"], r["tutorial"]
    lines = [f"digits 5-9 with {t['train_images']} training images (10%), {t['epochs']} epochs; the start was trained "
             f"on digits 0-4 (val acc {t['pretrain_val_acc']:.4f})",
             f"{'start':<22} {'best val acc':>12} {'epochs to scratch best':>23}"]
    for name in ("scratch", "pretrained"):
        lines.append(f"{name:<22} {t[f'{name}_val_acc']:>12.4f} "
                     f"{_epochs(t[f'{name}_epochs_to_goal'], t['epochs']):>23}")
    lines.append(f"\n--config tutorial on digits, at most {u['epochs_cap']} epochs (early stopping on); the start: `cnnray train`'s weights "
                 f"(val acc {u['default_job_val_acc']:.4f}, {u['default_job_seconds']:.0f} s)")
    lines.append(f"{'start':<22} {'epoch 1 acc':>11} {'best val acc':>12} {'epochs to 99%':>14} {'seconds to 99%':>15} "
                 f"{'epochs run':>10}")
    for name in ("scratch", "pretrained", "pretrained_matched"):
        s = u[name]
        secs = f"{s['seconds_to_99']:.0f}" if s["seconds_to_99"] is not None else f"- ({s['seconds']:.0f} run)"
        label = {"pretrained_matched": "pretrained, its norm."}.get(name, name)
        lines.append(f"{label:<22} {s['first_val_acc']:>11.4f} {s['best_val_acc']:>12.4f} "
                     f"{_epochs(s['epochs_to_99'], s['epochs_run']):>14} {secs:>15} {s['epochs_run']:>10}")
    lines.append("(pretrained: the recipe's ImageNet normalization; pretrained, its norm.: data.normalize_stats=dataset, "
                 "what the start was trained with)")
    return "\n".join(lines)
