"""`cnnray bench train`: loop overhead under Ray Train, bf16+channels_last speed-up, time to 99% accuracy.

Every figure is a ratio of two measurements taken in the same command on the same model and data.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from cnnray.config import Config, load_config
from cnnray.loop.engine import Engine
from cnnray.models import create_model
from cnnray.models.from_config import build_model


def _median_after_warmup(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 2 else values)


def plain_throughput(cfg: Config, threads: int) -> float:
    """Median training images/s of the cnnray loop in this process (no Ray), epochs after the first."""
    # deferred (heavy import): pyarrow, PIL
    from cnnray.data import MemoryLoader, build_transforms, describe_dataset, load_arrays

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    info = describe_dataset(cfg.data)
    tx, ty, _, _ = load_arrays(cfg.data)
    train_tf, _ = build_transforms(cfg.data, info)
    loader = MemoryLoader(tx, ty, cfg.train.batch_size, seed=cfg.train.seed, transform=train_tf)
    engine = Engine(build_model(cfg, info.num_classes, info.channels), cfg, steps_per_epoch=len(loader),
                    num_classes=info.num_classes, device=torch.device("cpu"))
    rates = []
    for epoch in range(cfg.train.epochs):
        loader.set_epoch(epoch)
        rates.append(engine.train_epoch(loader)["images_per_s"])
    return _median_after_warmup(rates)


def ray_throughput(cfg: Config) -> float:
    """Median training images/s of the same loop as one Ray Train worker, epochs after the first."""
    # deferred (heavy import): pyarrow, PIL
    from cnnray.run.training import run_training

    rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-") as d:
        cfg = cfg.model_copy(deep=True)
        cfg.scaling.storage_path = d
        cfg.scaling.runner = "ray"  # this figure is Ray Train's overhead, wherever auto would run it
        result = run_training(cfg, on_line=lambda s: None, on_report=lambda m: rates.append(m["images_per_s"]))
    if result["status"] != "FINISHED":
        raise RuntimeError(f"bench training run {result['status']}: {result.get('error')}")
    return _median_after_warmup(rates)


def precision_engines(*, width: float = 1.0, batch: int = 64, steps: int = 6, threads: int = 2):
    """Two engines on the same ResNet-18 (32x32, cifar stem): fp32 NCHW and bf16 channels_last, plus data."""
    torch.set_num_threads(threads)
    engines = {}
    for name, precision, cl in (("fp32_nchw", "fp32", False), ("bf16_channels_last", "bf16", True)):
        torch.manual_seed(0)
        cfg = load_config(overrides={"train.precision": precision, "train.channels_last": cl, "train.ema": False})
        model = create_model("resnet18", num_classes=10, in_chans=3, stem="cifar", width=width)
        engines[name] = Engine(model, cfg, steps_per_epoch=steps, num_classes=10, device=torch.device("cpu"))
    data = [(torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))) for _ in range(steps)]
    return engines, data


def precision_throughput(rounds: int = 4, **kwargs: Any) -> dict[str, float]:
    """Median training images/s of each precision; rounds alternate so machine noise hits both alike."""
    engines, data = precision_engines(**kwargs)
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds + 1):
        for name, engine in engines.items():
            rates[name].append(engine.train_epoch(data)["images_per_s"])
    return {name: _median_after_warmup(r) for name, r in rates.items()}


def _time_to_target(cmd: list[str], pattern: str, target: float, cwd: str, timeout: float) -> float | None:
    """Seconds from process start until a stdout line's accuracy reaches `target` (None if never)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    hit = None
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(pattern, line)
        if m and hit is None and float(m.group(1)) >= target:
            hit = time.time() - t0
            proc.terminate()  # reached: the rest of the run is not part of the measurement
            break
        if time.time() - t0 > timeout:
            proc.kill()
            break
    proc.wait(timeout=60)
    return hit


def time_to_accuracy(target: float = 0.99, timeout: float = 600) -> dict[str, float | None]:
    """Whole-process seconds to `target` val accuracy on digits, four processes raced one after another:
    `cnnray train` with its defaults against the lean plain fp32 loop (`plain_loop --recipe lean`, issue
    12's race), and `cnnray train --config tutorial` against the tutorial recipe as a plain fp32 loop
    (recipe vs recipe)."""
    train = [sys.executable, "-m", "workflows.train", "registry.enabled=false"]
    plain = [sys.executable, "-m", "cnnray.bench.plain_loop", "--epochs", "30", "--target", str(target)]
    acc_pct, acc = r"val_acc\s+([\d.]+)%", r"val_acc ([\d.]+)"
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-") as d:
        cnnray_s = _time_to_target([*train, "train.epochs=20"], acc_pct, target * 100, d, timeout)
        lean_s = _time_to_target([*plain, "--recipe", "lean"], acc, target, d, timeout)
        tutorial_s = _time_to_target([*train, "--config", "tutorial"], acc_pct, target * 100, d, timeout)
        plain_s = _time_to_target([*plain, "--recipe", "tutorial"], acc, target, d, timeout)
    ratio = lambda a, b: (a / b) if a and b else None  # noqa: E731
    return {"cnnray_s": cnnray_s, "lean_s": lean_s, "tutorial_s": tutorial_s, "plain_s": plain_s,
            "speedup": ratio(lean_s, cnnray_s), "tutorial_speedup": ratio(plain_s, tutorial_s)}


PRECISION_BATCHES = (64, 128)


def run_train_bench(epochs: int = 4, quick: bool = False) -> dict[str, Any]:
    """All three train benchmarks; `quick` skips time-to-accuracy (the longest)."""
    # One thread each: the loop is what is compared, and the second core absorbs Ray's own processes.
    base = load_config(overrides={"train.epochs": epochs, "scaling.num_workers": 1, "scaling.cpus_per_worker": 1,
                                  "tracking.enabled": False, "registry.enabled": False})
    plain = plain_throughput(base, threads=1)
    ray_rate = ray_throughput(base)
    out: dict[str, Any] = {"plain_images_per_s": plain, "ray_images_per_s": ray_rate, "ray_over_plain": ray_rate / plain}
    # Two batch sizes: 64, and 128, where fp32 falls out of cache and
    # AMX bf16 does not; the headline figure is at 128, both are printed.
    for batch in PRECISION_BATCHES:
        prec = precision_throughput(batch=batch, steps=max(3, 384 // batch))
        fp32, bf16 = prec["fp32_nchw"], prec["bf16_channels_last"]
        suffix = "" if batch == PRECISION_BATCHES[-1] else f"_b{batch}"
        out.update({f"fp32_nchw_images_per_s{suffix}": fp32, f"bf16_channels_last_images_per_s{suffix}": bf16,
                    f"bf16_cl_over_fp32{suffix}": bf16 / fp32})
    if not quick:
        out.update({f"time_to_99_{k}": v for k, v in time_to_accuracy().items()})
    return out


def format_train_bench(r: dict[str, Any]) -> str:
    """Human-readable lines with the goals beside the figures."""
    lines = [
        f"loop under Ray Train (1 worker) / plain process: {r['ray_images_per_s']:.0f} / {r['plain_images_per_s']:.0f}"
        f" img/s = {r['ray_over_plain']:.3f}  (goal >= 0.97)",
    ]
    for batch in PRECISION_BATCHES:
        sfx = "" if batch == PRECISION_BATCHES[-1] else f"_b{batch}"
        lines.append(f"bf16+channels_last / fp32 NCHW (ResNet-18, 32x32, batch {batch}): "
                     f"{r['bf16_channels_last_images_per_s' + sfx]:.0f} / {r['fp32_nchw_images_per_s' + sfx]:.0f} img/s"
                     f" = {r['bf16_cl_over_fp32' + sfx]:.2f}x" + ("  (goal >= 2.5x)" if not sfx else ""))
    if "time_to_99_cnnray_s" in r:
        fmt = lambda v: "not reached" if v is None else f"{v:.1f}s"  # noqa: E731
        c, lean, s = r["time_to_99_cnnray_s"], r.get("time_to_99_lean_s"), r["time_to_99_speedup"]
        lines.append(f"time to 99% val acc on digits, whole process: cnnray train (defaults) {fmt(c)} vs a lean plain "
                     f"fp32 loop {fmt(lean)}" + (f" = {s:.2f}x faster" if s else "") + "  (goal >= 1.0x)")
        t, p, ts = r["time_to_99_tutorial_s"], r["time_to_99_plain_s"], r.get("time_to_99_tutorial_speedup")
        lines.append(f"  tutorial recipe both sides: cnnray --config tutorial {fmt(t)} vs plain fp32 loop {fmt(p)}"
                     + (f" = {ts:.2f}x faster" if ts else ""))
    return "\n".join(lines)
