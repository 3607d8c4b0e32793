"""What one training run used: wall seconds, device-seconds (GPU-seconds on GPU, CPU-seconds of the rank processes
on CPU), images and where the time went, as plain arithmetic (no Ray, no MLflow). The rank loop measures each rank
(`local_totals`), sums the ranks with one all-reduce per epoch and reports `CostTotals.metrics()`; a checkpoint's
meta keeps the totals so that a resumed run's figures include the epochs before."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

from cnnray.config.schema import PriceSection

COST_KEY = "cost"  # in a checkpoint's meta.json: CostTotals.to_meta() of the run up to that checkpoint
METRIC_PREFIX = "cost_"
EPOCH_KEY = "cost_epoch_device_s"  # device-seconds of one epoch alone (a report's and a checkpoint's)
SECONDS_PER_HOUR = 3600.0
KINDS = ("cpu", "gpu")


def device_hours(seconds: float) -> float:
    """Device-seconds as device-hours (GPU-hours, or CPU core-hours on CPU)."""
    return float(seconds) / SECONDS_PER_HOUR


def money(device_hours: float, kind: str, price: PriceSection) -> float | None:
    """`device_hours` of `kind` ("cpu" or "gpu") at tracking.price_per_device_hour; None when that price is unset."""
    if kind not in KINDS:
        raise ValueError(f"device kind {kind!r}: expected one of {', '.join(KINDS)}")
    per_hour = price.gpu if kind == "gpu" else price.cpu
    return None if per_hour is None else float(device_hours) * float(per_hour)


@dataclass(frozen=True)
class CostTotals:
    """Cumulative figures of a run over all its ranks: seconds (wall: the ranks' mean; the rest summed), images."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0  # wall x GPUs per worker, 0 on CPU
    device_s: float = 0.0  # gpu_s on GPU, else cpu_s (each attempt adds its own kind's)
    images: float = 0.0  # training images stepped on (drop_last: full batches only)
    startup_s: float = 0.0  # from the loop's start to its first training batch (data, model, restore)
    train_s: float = 0.0
    val_s: float = 0.0
    checkpoint_s: float = 0.0  # writing and handing over checkpoints (counted in the epoch after the write)
    epoch_device_s: float = 0.0  # the latest epoch's device-seconds alone (not a sum: `plus` takes the newer)

    @staticmethod
    def names() -> tuple[str, ...]:
        """The field names, in the order of `to_vector`."""
        return tuple(f.name for f in fields(CostTotals))

    def plus(self, other: CostTotals) -> CostTotals:
        """These totals followed by `other` (a later attempt): sums, and `other`'s epoch."""
        summed = {n: getattr(self, n) + getattr(other, n) for n in self.names() if n != "epoch_device_s"}
        return CostTotals(**summed, epoch_device_s=other.epoch_device_s)

    def to_vector(self) -> list[float]:
        """The figures as one list (what the ranks all-reduce)."""
        return [float(getattr(self, n)) for n in self.names()]

    @classmethod
    def from_vector(cls, values: Sequence[float], world: int = 1) -> CostTotals:
        """Totals from the sum over `world` ranks of their `to_vector()`: the wall is the ranks' mean."""
        d = dict(zip(cls.names(), (float(v) for v in values)))
        d["wall_s"] /= max(1, int(world))
        return cls(**d)

    @property
    def device_hours(self) -> float:
        return device_hours(self.device_s)

    def metrics(self) -> dict[str, float]:
        """The report's keys: cost_wall_s, cost_cpu_s, ..., cost_epoch_device_s (floats)."""
        return {METRIC_PREFIX + n: float(getattr(self, n)) for n in self.names()}

    def to_meta(self, kind: str) -> dict[str, Any]:
        """What a checkpoint's meta keeps (`from_meta` reads it back)."""
        return {**asdict(self), "kind": kind}

    @classmethod
    def from_meta(cls, d: Mapping[str, Any] | None) -> CostTotals:
        """Totals a checkpoint's meta recorded; zeros for none (a checkpoint from before cost accounting)."""
        if not isinstance(d, Mapping):
            return cls()
        try:
            return cls(**{n: float(d.get(n) or 0.0) for n in cls.names()})
        except (TypeError, ValueError):
            return cls()


def local_totals(*, wall_s: float, cpu_s: float, gpus: float, parts: Mapping[str, float],
                 epoch_device_s: float) -> CostTotals:
    """One rank's figures since its loop started: `gpus` per worker (0 on CPU); `parts`: images, startup_s,
    train_s, val_s, checkpoint_s."""
    gpu_s = wall_s * gpus
    return CostTotals(wall_s=wall_s, cpu_s=cpu_s, gpu_s=gpu_s, device_s=gpu_s if gpus > 0 else cpu_s,
                      images=float(parts.get("images", 0.0)), startup_s=float(parts.get("startup_s", 0.0)),
                      train_s=float(parts.get("train_s", 0.0)), val_s=float(parts.get("val_s", 0.0)),
                      checkpoint_s=float(parts.get("checkpoint_s", 0.0)), epoch_device_s=epoch_device_s)


def totals_of_report(report: Mapping[str, Any]) -> CostTotals | None:
    """The totals an epoch's report carries (its cost_* keys), None when it has none (an error report)."""
    if METRIC_PREFIX + "device_s" not in report:
        return None
    return CostTotals(**{n: float(report.get(METRIC_PREFIX + n) or 0.0) for n in CostTotals.names()})


def kind_of(totals: CostTotals) -> str:
    """"gpu" when the run spent GPU-seconds, else "cpu"."""
    return "gpu" if totals.gpu_s > 0 else "cpu"


def over_budget(totals: CostTotals, budget_device_hours: float | None) -> bool:
    """The rule of train.budget_device_hours: stop when spent + the latest epoch's cost would exceed the budget."""
    if budget_device_hours is None:
        return False
    return device_hours(totals.device_s + totals.epoch_device_s) > budget_device_hours


def cost_result(totals: CostTotals, price: PriceSection, budget_device_hours: float | None = None) -> dict[str, Any]:
    """The `"cost"` object of a result: the totals, device-hours, kind, money (None without a price), budget."""
    kind = kind_of(totals)
    hours = totals.device_hours
    out: dict[str, Any] = {k.removeprefix(METRIC_PREFIX): round(v, 6) for k, v in totals.metrics().items()}
    out.update(device_hours=hours, device_kind=kind, money=money(hours, kind, price),
               budget_device_hours=budget_device_hours)
    return out


def format_hours(hours: float) -> str:
    """Device-hours with 3 significant figures (`0.000123`, `1.25`)."""
    return f"{hours:.3g}" if hours >= 1e-4 or hours == 0 else f"{hours:.2e}"


def format_cost(cost: Mapping[str, Any]) -> str:
    """One line from a result's `"cost"` object: device-hours (and money), wall, where the time went, images."""
    kind = str(cost.get("device_kind", "cpu"))
    unit = "GPU-hours" if kind == "gpu" else "CPU-hours"
    line = f"cost: {format_hours(float(cost.get('device_hours', 0.0)))} {unit}"
    if cost.get("money") is not None:
        line += f" = {float(cost['money']):.4g} at tracking.price_per_device_hour.{kind}"
    parts = "  ".join(f"{label} {float(cost.get(key, 0.0)):.1f}s" for key, label in (
        ("startup_s", "start-up"), ("train_s", "train"), ("val_s", "validation"), ("checkpoint_s", "checkpoints")))
    return (line + f"  ({float(cost.get('device_s', 0.0)):.1f} device-s in {float(cost.get('wall_s', 0.0)):.1f}s wall; "
            f"rank-seconds: {parts}; {int(float(cost.get('images', 0.0)))} images)")


def budget_line(cost: Mapping[str, Any]) -> str | None:
    """What the console says when train.budget_device_hours ended the run (None: it did not)."""
    budget = cost.get("budget_device_hours")
    if budget is None:
        return None
    epoch_h = device_hours(float(cost.get("epoch_device_s", 0.0)))
    spent = format_hours(float(cost.get("device_hours", 0.0)))
    if epoch_h > float(budget):
        return (f"train.budget_device_hours={budget:g} is smaller than one epoch's measured cost "
                f"({format_hours(epoch_h)} device-hours): the run stopped after that epoch, {spent} spent")
    return (f"stopped by train.budget_device_hours={budget:g}: {spent} device-hours spent, and one more epoch "
            f"(~{format_hours(epoch_h)}) would exceed it; the last epoch is checkpointed")



PARTS = ("images", "startup_s", "train_s", "val_s", "checkpoint_s")


class CostMeter:
    """One rank's clocks over one attempt of its loop, on top of the totals its checkpoint recorded (`prior`).

    `gpus`: GPUs per worker (0 on CPU, where the device-seconds are this process's CPU-seconds, every thread's).
    The clocks start at construction, the loop's first line; `prior` may be set later, once the checkpoint is read.
    """

    def __init__(self, prior: CostTotals, gpus: float, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time) -> None:
        self.prior, self.gpus = prior, float(gpus)
        self.clock, self.cpu_clock = clock, cpu_clock
        self.t0, self.c0 = clock(), cpu_clock()
        self.parts = dict.fromkeys(PARTS, 0.0)
        self.boundary: tuple[float, float] | None = None  # (wall, cpu) where the current epoch's cost began
        self.totals = prior

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus > 0 else "cpu"

    def training_starts(self) -> None:
        """The first epoch begins: the time so far was start-up (and is not counted in any epoch's own cost)."""
        if self.boundary is None:
            now = self.clock()
            self.parts["startup_s"] = now - self.t0
            self.boundary = (now, self.cpu_clock())

    def add(self, part: str, amount: float) -> None:
        """Add seconds (or images) to one of PARTS."""
        self.parts[part] += float(amount)

    @contextmanager
    def timing(self, part: str) -> Iterator[None]:
        """Count the wall seconds of the block as `part`."""
        start = self.clock()
        try:
            yield
        finally:
            self.add(part, self.clock() - start)

    def epoch_end(self, reduce: Callable[[list[float]], list[float]] | None = None, world: int = 1) -> CostTotals:
        """The run's totals after this epoch; `reduce` sums a list over the ranks (an all-reduce; None: one rank)."""
        now, cpu = self.clock(), self.cpu_clock()
        wall0, cpu0 = self.boundary or (self.t0, self.c0)
        epoch = (now - wall0) * self.gpus if self.gpus > 0 else cpu - cpu0
        self.boundary = (now, cpu)
        local = local_totals(wall_s=now - self.t0, cpu_s=cpu - self.c0, gpus=self.gpus, parts=self.parts,
                             epoch_device_s=epoch)
        summed = reduce(local.to_vector()) if reduce is not None and world > 1 else local.to_vector()
        self.totals = self.prior.plus(CostTotals.from_vector(summed, world))
        return self.totals
