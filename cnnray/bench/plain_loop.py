"""Baseline for `cnnray bench train`: the tutorial's recipe as a plain PyTorch fp32 loop, one process.

AdamW lr 1e-3, batch 32, linear warmup + cosine per step, fp32 NCHW, torch DataLoader; prints one line
per epoch with the elapsed time so the bench can read time-to-accuracy.
python -m cnnray.bench.plain_loop --epochs 20 --target 0.99
"""

from __future__ import annotations

import argparse
import math
import time

T0 = time.time()

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


def main() -> None:
    """Train until the target validation accuracy or the epoch limit."""
    from cnnray.config import load_config
    from cnnray.data import describe_dataset, load_arrays
    from cnnray.train.build import build_model

    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config()
    info = describe_dataset(cfg.data)
    tx, ty, vx, vy = load_arrays(cfg.data)
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    norm = lambda x: (x.float() / 255 - mean) / std  # noqa: E731
    train = DataLoader(TensorDataset(norm(tx), ty), batch_size=32, shuffle=True, drop_last=True)
    model = build_model(cfg, info.num_classes, info.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    total, warmup = args.epochs * len(train), len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                                              0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    loss_fn = nn.CrossEntropyLoss()
    vxn = norm(vx)
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(vxn[i:i + 256]).argmax(1) == vy[i:i + 256]).sum().item()
                      for i in range(0, len(vy), 256)) / len(vy)
        print(f"epoch {epoch + 1} val_acc {acc:.4f} elapsed {time.time() - T0:.2f}", flush=True)
        if acc >= args.target:
            break


if __name__ == "__main__":
    main()
