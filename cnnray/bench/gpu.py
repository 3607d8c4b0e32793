"""`cnnray bench train --gpu`: the training loop on a CUDA GPU, against a lean loop, in one run.

Needs no Ray and no MLflow (it runs `Engine` directly), so it also runs on a GPU machine that has only
PyTorch. Every figure is images/s, the median of the epochs after the first (which holds cuDNN's
autotuning and torch.compile), and every goal is a ratio of two figures measured here:
- `Engine` / lean loop (same model, data, bf16 autocast, channels_last, fused AdamW, no host sync): >= 0.97
- `cbam_resnet18` / `resnet18` under `Engine` (eager and compiled): >= 0.75
python -m cnnray.bench.gpu [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnray.config import load_config
from cnnray.errors import NonFiniteLossError
from cnnray.loop.engine import Engine
from cnnray.models import create_model

Batch = tuple[Tensor, Tensor]


def _data(batch: int, size: int, steps: int, channels_last: bool, classes: int = 10) -> list[Batch]:
    """`steps` random batches already on the GPU (and in the loop's memory format): no input pipeline."""
    g = torch.Generator(device="cuda").manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [(torch.randn(batch, 3, size, size, device="cuda", generator=g).contiguous(memory_format=fmt),
             torch.randint(0, classes, (batch,), device="cuda", generator=g)) for _ in range(steps)]


def _median_rate(epoch: Callable[[], float], epochs: int) -> float:
    try:
        rates = [epoch() for _ in range(epochs)]
    except NonFiniteLossError as e:  # a row that diverges is reported, not a crash of the whole table
        print(f"  ({e})", flush=True)
        return float("nan")
    return statistics.median(rates[1:])


def _model(name: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    stem = "cifar" if size <= 64 else "imagenet"
    return create_model(name, num_classes=10, in_chans=3, stem=stem, width=1.0)


def engine_rate(name: str, *, batch: int, size: int, steps: int, epochs: int, precision: str = "bf16",
                channels_last: bool = True, compile: bool = False, ema: bool = False) -> float:
    """Images/s of `Engine.train_epoch`; EMA, label smoothing and the lr schedule off, like the lean loop."""
    cfg = load_config(overrides={
        "train.precision": precision, "train.channels_last": channels_last, "train.compile": compile,
        "train.ema": ema, "train.label_smoothing": 0.0, "train.batch_size": batch,
        "schedule.name": "constant", "schedule.warmup_epochs": 0})
    engine = Engine(_model(name, size), cfg, steps_per_epoch=steps, num_classes=10, device="cuda")
    data = _data(batch, size, steps, channels_last)
    return _median_rate(lambda: engine.train_epoch(data)["images_per_s"], epochs)


def lean_rate(name: str, *, batch: int, size: int, steps: int, epochs: int, compile: bool = False) -> float:
    """Images/s of the leanest loop: bf16 autocast, channels_last, fused AdamW, nothing read back."""
    model = _model(name, size).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    run = torch.compile(model) if compile else model
    data = _data(batch, size, steps, True)

    def epoch() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in data:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(run(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return len(data) * batch / (time.perf_counter() - t0)

    return _median_rate(epoch, epochs)


def run_gpu_bench(quick: bool = False) -> dict[str, Any]:
    """Every figure of the table in the README, measured in this process."""
    if not torch.cuda.is_available():
        raise RuntimeError("cnnray bench train --gpu needs a CUDA GPU; none is visible to PyTorch")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    small = dict(batch=512, size=32, steps=12 if quick else 24, epochs=4 if quick else 6)
    big = dict(batch=256, size=224, steps=6 if quick else 12, epochs=3 if quick else 4)
    r: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    r["lean_resnet18"] = lean_rate("resnet18", **small)
    r["engine_resnet18_bf16_cl"] = engine_rate("resnet18", **small)
    r["engine_resnet18_fp32_nchw"] = engine_rate("resnet18", precision="fp32", channels_last=False, **small)
    r["engine_resnet18_fp16_cl"] = engine_rate("resnet18", precision="fp16", **small)
    r["engine_resnet18_bf16_cl_ema"] = engine_rate("resnet18", ema=True, **small)
    r["lean_cbam_resnet18"] = lean_rate("cbam_resnet18", **small)
    r["engine_cbam_resnet18_bf16_cl"] = engine_rate("cbam_resnet18", **small)
    if not quick:
        r["lean_resnet18_compiled"] = lean_rate("resnet18", compile=True, **small)
        r["engine_resnet18_bf16_cl_compiled"] = engine_rate("resnet18", compile=True, **small)
        r["engine_cbam_resnet18_bf16_cl_compiled"] = engine_rate("cbam_resnet18", compile=True, **small)
        r["lean_resnet50_224"] = lean_rate("resnet50", **big)
        r["engine_resnet50_224_bf16_cl"] = engine_rate("resnet50", **big)
    r["engine_over_lean"] = r["engine_resnet18_bf16_cl"] / r["lean_resnet18"]
    r["cbam_over_resnet18"] = r["engine_cbam_resnet18_bf16_cl"] / r["engine_resnet18_bf16_cl"]
    if not quick:
        r["engine_over_lean_compiled"] = r["engine_resnet18_bf16_cl_compiled"] / r["lean_resnet18_compiled"]
        r["engine_over_lean_resnet50"] = r["engine_resnet50_224_bf16_cl"] / r["lean_resnet50_224"]
        r["cbam_over_resnet18_compiled"] = (r["engine_cbam_resnet18_bf16_cl_compiled"]
                                            / r["engine_resnet18_bf16_cl_compiled"])
    return r


_ROWS = [
    ("engine_resnet18_fp32_nchw", "Engine, resnet18, fp32 NCHW"),
    ("engine_resnet18_bf16_cl", "Engine, resnet18, bf16 + channels_last"),
    ("engine_resnet18_fp16_cl", "Engine, resnet18, fp16 + channels_last + GradScaler"),
    ("engine_resnet18_bf16_cl_ema", "Engine, resnet18, bf16 + channels_last + EMA"),
    ("lean_resnet18", "lean loop, resnet18, bf16 + channels_last + fused AdamW"),
    ("engine_resnet18_bf16_cl_compiled", "Engine, resnet18, bf16 + channels_last + torch.compile"),
    ("lean_resnet18_compiled", "lean loop, resnet18, compiled"),
    ("engine_cbam_resnet18_bf16_cl", "Engine, cbam_resnet18, bf16 + channels_last"),
    ("lean_cbam_resnet18", "lean loop, cbam_resnet18"),
    ("engine_cbam_resnet18_bf16_cl_compiled", "Engine, cbam_resnet18, compiled"),
    ("engine_resnet50_224_bf16_cl", "Engine, resnet50 224px batch 256, bf16 + channels_last"),
    ("lean_resnet50_224", "lean loop, resnet50 224px batch 256"),
]
_RATIOS = [
    ("engine_over_lean", "Engine / lean loop, resnet18 eager", 0.97),
    ("engine_over_lean_compiled", "Engine / lean loop, resnet18 compiled", 0.97),
    ("engine_over_lean_resnet50", "Engine / lean loop, resnet50 224px", 0.97),
    ("cbam_over_resnet18", "cbam_resnet18 / resnet18 under Engine, eager", 0.75),
    ("cbam_over_resnet18_compiled", "cbam_resnet18 / resnet18 under Engine, compiled", 0.75),
]


def format_gpu_bench(r: dict[str, Any]) -> str:
    """The table (32x32 batch 512 unless named) and the ratios with their goals."""
    lines = [f"{r['device']}, torch {r['torch']}; ResNet-18 cifar stem 32x32 batch 512 unless named (images/s)"]
    lines += [f"  {label:<62} {r[key]:>9,.0f}" for key, label in _ROWS if key in r]
    lines += [f"  {label:<62} {r[key]:>9.3f}  (goal >= {goal})" for key, label, goal in _RATIOS if key in r]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, no compiled and no 224px rows")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    r = run_gpu_bench(quick=args.quick)
    print(format_gpu_bench(r), flush=True)
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
