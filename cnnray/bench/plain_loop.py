"""Baseline for `cnnray bench train`: the tutorial's recipe (workflows/configs/tutorial.yaml) as a plain
PyTorch fp32 loop in one process, with no cnnray training code (only its digits data and model builder).

Recipe: AdamW (betas 0.9/0.999, weight decay 1e-4) with two parameter groups, backbone lr 1e-4 and
head lr 1e-3; per-step linear warmup over 5 epochs (from 1% of the lr) then cosine to 1e-6 (the
backbone group scaled alike); CrossEntropyLoss(label_smoothing=0.1); clip_grad_norm_ 1.0; head dropout
0.5; early stopping on val accuracy with patience 10; batch 32; torchvision v2 augmentation per image:
horizontal flip 0.5, affine (rotation 15 degrees, translate 0.1, scale 0.9-1.1), colour jitter
(brightness/contrast/saturation 0.2, hue 0.1; saturation and hue do nothing to grayscale digits),
normalization by ImageNet statistics (averaged over RGB for 1 channel), random erasing p 0.2 (area
0.02-0.33, ratio 0.3-3.3). Prints one line per epoch, `epoch N val_acc X elapsed S`, which the bench
parses for time-to-accuracy.

`--recipe lean` is the other baseline: the plain single-process loop a user would write first (the
default model and data, AdamW lr 1e-3 in one group, per-step warmup over one epoch then cosine, plain
cross entropy, no augmentation, no clipping, fp32 NCHW, batches sliced from one pre-normalized tensor).
`cnnray bench train` races `cnnray train`'s defaults against it (issue 12's time-to-99% goal).

python -m cnnray.bench.plain_loop [--recipe tutorial|lean] --epochs 20 --target 0.99
"""

from __future__ import annotations

import argparse
import math
import time

from cnnray.config import load_config
from cnnray.models.from_config import build_model

T0 = time.time()

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LR_HEAD, LR_BACKBONE, MIN_LR, WEIGHT_DECAY, BETAS = 1e-3, 1e-4, 1e-6, 1e-4, (0.9, 0.999)
WARMUP_EPOCHS, WARMUP_START, LABEL_SMOOTHING, CLIP_NORM, PATIENCE, BATCH = 5, 0.01, 0.1, 1.0, 10, 32
HEAD_NAMES = ("fc", "head", "classifier")


class Augmented(Dataset):
    """uint8 [N,C,H,W] images and labels; each item goes through `transform` (a fresh draw per access)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: nn.Module) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[i]), self.y[i]


def transforms(channels: int) -> tuple[nn.Module, nn.Module]:
    """(train, eval) torchvision v2 pipelines on uint8 CHW tensors."""
    # deferred (heavy import): torchvision
    from torchvision.transforms import v2

    mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,)
    std = IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,)
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train = v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
        *to_float,
        v2.RandomErasing(p=0.2, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0),
    ])
    return train, v2.Compose(to_float)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of each group's lr: linear warmup from WARMUP_START, then cosine to MIN_LR / LR_HEAD."""
    floor = MIN_LR / LR_HEAD
    if step < warmup:
        cos = 1.0
    else:
        cos = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return cos * (WARMUP_START + (1 - WARMUP_START) * step / warmup if step < warmup else 1.0)


@torch.no_grad()
def validate(model: nn.Module, vxn: torch.Tensor, vy: torch.Tensor, epoch: int) -> float:
    """Validation accuracy, printed as the line the bench parses."""
    model.eval()
    acc = sum((model(vxn[i:i + 256]).argmax(1) == vy[i:i + 256]).sum().item()
              for i in range(0, len(vy), 256)) / len(vy)
    print(f"epoch {epoch + 1} val_acc {acc:.4f} elapsed {time.time() - T0:.2f}", flush=True)
    return acc


def lean(epochs: int, target: float) -> None:
    """The lean baseline (see the module docstring)."""
    # deferred (heavy import): pyarrow, PIL
    from cnnray.data import describe_dataset, load_arrays

    cfg = load_config()
    info = describe_dataset(cfg.data)
    tx, ty, vx, vy = load_arrays(cfg.data)
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    txn, vxn = ((x.float() / 255 - mean) / std for x in (tx, vx))
    model = build_model(cfg, info.num_classes, info.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = len(ty) // BATCH
    total, warmup = epochs * steps, steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                                              0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(ty))
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(txn[idx]), ty[idx]).backward()
            opt.step()
            sched.step()
        if validate(model, vxn, vy, epoch) >= target:
            break


def main() -> None:
    """Train until the target validation accuracy, early stopping, or the epoch limit."""
    # deferred (heavy import): pyarrow, PIL
    from cnnray.data import describe_dataset, load_arrays

    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recipe", choices=("tutorial", "lean"), default="tutorial")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.recipe == "lean":
        lean(args.epochs, args.target)
        return
    cfg = load_config(overrides={"model.drop_rate": 0.5})  # the default model, with the recipe's head dropout
    info = describe_dataset(cfg.data)
    tx, ty, vx, vy = load_arrays(cfg.data)
    train_tf, eval_tf = transforms(info.channels)
    train = DataLoader(Augmented(tx, ty, train_tf), batch_size=BATCH, shuffle=True, drop_last=True)
    vxn = torch.stack([eval_tf(x) for x in vx])
    model = build_model(cfg, info.num_classes, info.channels)
    head = [p for n, p in model.named_parameters() if n.split(".")[0] in HEAD_NAMES]
    backbone = [p for n, p in model.named_parameters() if n.split(".")[0] not in HEAD_NAMES]
    opt = torch.optim.AdamW([{"params": backbone, "lr": LR_BACKBONE}, {"params": head, "lr": LR_HEAD}],
                            betas=BETAS, weight_decay=WEIGHT_DECAY)
    total, warmup = args.epochs * len(train), WARMUP_EPOCHS * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    best, bad = -1.0, 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            sched.step()
        acc = validate(model, vxn, vy, epoch)
        if acc >= args.target:
            break
        best, bad = (acc, 0) if acc > best else (best, bad + 1)
        if bad >= PATIENCE:
            break


if __name__ == "__main__":
    main()
