"""Learning-rate schedules as closed forms of the iteration counter, so a resumed run gets the same lrs."""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from cnnray.config.schema import ScheduleSection


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class Schedule:
    """Sets every group's lr = lr_at(step) * group['lr_mult']; step() once per optimizer step.

    Warmup (all but onecycle) multiplies the schedule by a factor rising linearly from
    warmup_start_factor to 1 over warmup_epochs * steps_per_epoch iterations. Cosine starts its
    decay after warmup; step/multistep/exponential count from iteration 0. Plateau follows
    torch's ReduceLROnPlateau: lr *= factor once more than `patience` epochs in a row did not
    improve the metric, floored at min_lr.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleSection, *, base_lr: float,
                 steps_per_epoch: int, epochs: int, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.optimizer, self.cfg, self.base_lr, self.mode = optimizer, cfg, base_lr, mode
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = self.steps_per_epoch * epochs
        self.warmup_steps = 0 if cfg.name == "onecycle" else round(cfg.warmup_epochs * self.steps_per_epoch)
        self.milestones = sorted(round(m * self.total_steps) for m in cfg.milestones)
        self.step_count = 0
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0
        self._apply()

    def _main(self, step: int) -> float:
        c, lr, spe = self.cfg, self.base_lr, self.steps_per_epoch
        if c.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, max(0, step - self.warmup_steps) / span)
            return c.min_lr + (lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
        if c.name == "step":
            return lr * c.gamma ** math.floor(step / (c.step_epochs * spe))
        if c.name == "multistep":
            return lr * c.gamma ** bisect.bisect_right(self.milestones, step)
        if c.name == "exponential":
            return lr * c.gamma ** (step / spe)  # gamma per epoch, applied continuously
        if c.name == "plateau":
            return max(lr * self.plateau_scale, c.min_lr)
        return lr  # constant

    def _onecycle(self, step: int) -> float:
        # Same phases and end points as torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos").
        max_lr = self.cfg.max_lr or self.base_lr
        initial = max_lr / 25.0
        final = initial / 1e4
        total = max(2, self.total_steps)
        step = min(step, total - 1)
        end_up = float(self.cfg.pct_start * total) - 1
        if 0 < end_up and step <= end_up:
            return _cos_anneal(initial, max_lr, step / end_up)
        return _cos_anneal(max_lr, final, (step - end_up) / (total - 1 - end_up))

    def lr_at(self, step: int) -> float:
        """The base lr (before the group multiplier) at iteration `step`."""
        if self.cfg.name == "onecycle":
            return self._onecycle(step)
        lr = self._main(step)
        if step < self.warmup_steps:
            s = self.cfg.warmup_start_factor
            lr *= s + (1.0 - s) * step / self.warmup_steps
        return lr

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        self.last_lr = lr

    def step(self) -> None:
        """Advance one optimizer step and set the groups' lrs for the next one."""
        self.step_count += 1
        self._apply()

    def step_epoch(self, metric: float) -> None:
        """End-of-epoch hook: plateau reduces on a stalled metric; other schedules ignore it."""
        if self.cfg.name != "plateau":
            return
        best = self.plateau_best
        if best is None or (metric > best if self.mode == "max" else metric < best):
            self.plateau_best, self.plateau_bad = float(metric), 0
        else:
            self.plateau_bad += 1
        if self.plateau_bad > self.cfg.patience:
            self.plateau_scale *= self.cfg.factor
            self.plateau_bad = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """Counters only (plain numbers): the lrs are recomputed from them."""
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore the counters and set the groups' lrs accordingly."""
        self.step_count = int(sd["step_count"])
        self.plateau_scale = float(sd["plateau_scale"])
        self.plateau_best = sd["plateau_best"]
        self.plateau_bad = int(sd["plateau_bad"])
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleSection, *, base_lr: float,
                    steps_per_epoch: int, epochs: int, mode: str = "max") -> Schedule:
    """A per-iteration Schedule; `steps_per_epoch` counts optimizer steps, `mode` is the plateau metric's direction."""
    return Schedule(optimizer, cfg, base_lr=base_lr, steps_per_epoch=steps_per_epoch, epochs=epochs, mode=mode)
