"""The per-worker training loop: one epoch at a time, plain PyTorch; DDP comes in through `wrap`."""

from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnray.config.schema import Config
from cnnray.loop.early_stop import EarlyStopping
from cnnray.loop.freeze import HEAD_NAMES, backbone_norms, backbone_parameters, drop_grads, hold_running_stats
from cnnray.loop.ema import ModelEma, unwrap
from cnnray.errors import NonFiniteLossError
from cnnray.loop.losses import build_loss, distillation_loss
from cnnray.loop.metrics import MetricAccumulator
from cnnray.loop.nonfinite import NonFiniteGuard, poison_grads, step_skipping
from cnnray.loop.optim import build_optimizer
from cnnray.loop.precision import resolve_precision
from cnnray.loop.schedules import build_scheduler

T = TypeVar("T")
Batch = tuple[Tensor, Tensor]


def _with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Yield (item, is_last): the last micro-batch of an epoch must sync even mid-accumulation."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _strip_compile_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.replace("_orig_mod.", ""): v for k, v in sd.items()}


def rng_state() -> dict[str, Any]:
    """torch/cuda/numpy/python RNG states as tensors and numbers (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Engine:
    """Owns model, optimizer, schedule, EMA, AMP and counters; the caller owns data, Ray and checkpoint files.

    `steps_per_epoch` is the number of batches this rank sees per epoch; the schedule advances once per
    optimizer step, i.e. ceil(steps_per_epoch / accum_steps) times an epoch. `self.module` is the plain
    model (what is saved), `self.model` what the forward pass runs (wrapped by `wrap`, then compiled).
    Nothing in a training step reads a value back to the host (see `NonFiniteGuard`): the loss total and
    the non-finite flag stay on the device until a check every `check_every` steps and at epoch end.
    `nan_at_step` is a fault-injection hook for cnnray's tests (see `test_hooks`).
    """

    def __init__(self, model: nn.Module, cfg: Config, *, steps_per_epoch: int, num_classes: int,
                 device: torch.device | str, wrap: Callable[[nn.Module], nn.Module] | None = None,
                 mixup: Callable[[Tensor, Tensor], Batch] | None = None, nan_at_step: int | None = None,
                 check_every: int = 50, fused: bool | None = None) -> None:
        t = cfg.train
        self.cfg, self.num_classes, self.mixup = cfg, num_classes, mixup
        self.device = torch.device(device)
        self.precision = resolve_precision(t.precision, self.device)
        module = unwrap(model).to(self.device)
        self.channels_last = t.channels_last and any(isinstance(m, nn.Conv2d) for m in module.modules())
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        # Built from the plain module, before DDP/compile, so group names and weight decay see real names.
        self.optimizer = build_optimizer(module, cfg.optim, HEAD_NAMES,
                                         fused=self.device.type == "cuda" if fused is None else fused)
        # Fine-tuning: the backbone's parameters and norm layers, found once by the optimizer's head test.
        freezing = t.freeze_backbone_epochs > 0
        self._backbone_params = backbone_parameters(module, HEAD_NAMES) if freezing else []
        self._backbone_norms = backbone_norms(module, HEAD_NAMES) if freezing and t.freeze_bn else []
        self.mode = t.monitor_mode
        self.optim_steps_per_epoch = math.ceil(max(1, steps_per_epoch) / t.accum_steps)
        self.schedule = build_scheduler(self.optimizer, cfg.schedule, base_lr=cfg.optim.lr,
                                        steps_per_epoch=self.optim_steps_per_epoch, epochs=t.epochs,
                                        mode=self.mode)
        self.ema = ModelEma(module, t.ema_decay, warmup=t.ema_warmup) if t.ema else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_grad_scaler)
        self.loss_fn = build_loss(t.label_smoothing)
        self.wrapped = wrap(module) if wrap is not None else module
        self.model = torch.compile(self.wrapped) if t.compile else self.wrapped
        self.early_stopping = (EarlyStopping(t.early_stop_patience, t.early_stop_min_delta, self.mode)
                               if t.early_stop_patience else None)
        self.guard = NonFiniteGuard(self.device, check_every)
        self.nan_at_step = nan_at_step
        self.should_stop = False
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken
        self.first_step_at: float | None = None  # wall clock of this process's first optimizer step
        self.on_first_step: Callable[[], None] | None = None  # the host's hook (a local run opens MLflow then)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.best_source: str | None = None
        # Knowledge distillation (`cnnray compress --method distill`): an eval-mode teacher, run under no_grad.
        self.teacher: nn.Module | None = None
        self.distill_temperature, self.distill_alpha = 4.0, 0.7

    def _to_device(self, x: Tensor, y: Tensor) -> Batch:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    @property
    def backbone_frozen(self) -> bool:
        """Whether the current epoch trains the head only (train.freeze_backbone_epochs)."""
        # self.epoch counts completed epochs and is checkpointed, so this holds after a resume mid-freeze too.
        return self.epoch < self.cfg.train.freeze_backbone_epochs

    def _optimizer_step(self, micro: int) -> None:
        t = self.cfg.train
        if self.backbone_frozen:
            # Before the grads list below: rescaling, poison_grads, unscale and clipping then see the head only.
            # Dropping grads rather than requires_grad=False keeps DDP's reducer intact (see cnnray.loop.freeze).
            drop_grads(self._backbone_params)
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if micro < t.accum_steps and grads:
            # A short last group was divided by accum_steps; rescale to the mean over its micro-batches.
            torch._foreach_mul_(grads, t.accum_steps / micro)
        found_inf = self.guard.before_step()
        if self.scaler.is_enabled():
            poison_grads(grads, found_inf)  # fp16: GradScaler's own inf check then skips the step
        if t.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the fp16-scaled one
            nn.utils.clip_grad_norm_(self.module.parameters(), t.grad_clip)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            step_skipping(self.optimizer, found_inf)
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        self.global_step += 1
        if self.first_step_at is None:
            self.first_step_at = time.time()  # start-up breakdown (on a GPU: when the step was queued)
            if self.on_first_step is not None:
                self.on_first_step()
        if self.ema is not None:
            self.ema.update(self.module)
        if self.global_step % self.guard.check_every == 0:
            self._check_finite()

    def _check_finite(self) -> None:
        """Host sync: raise if any loss since the start was non-finite (no step was taken on it)."""
        try:
            self.guard.check(self.epoch)
        except NonFiniteLossError as e:
            self.global_step = e.step  # every step from the bad one on was skipped on the device
            self.optimizer.zero_grad(set_to_none=True)
            raise

    def train_epoch(self, batches: Iterable[Batch]) -> dict[str, float]:
        """One pass over `batches`; a NaN/inf loss skips every step from it on and raises NonFiniteLossError
        at the next check (every `check_every` steps, and at the latest when the epoch ends)."""
        t = self.cfg.train
        self.model.train()
        if self.backbone_frozen:
            hold_running_stats(self._backbone_norms)  # empty unless train.freeze_bn
        frozen = self.backbone_frozen  # of this epoch, before self.epoch advances below
        no_sync = getattr(self.wrapped, "no_sync", None)
        start = time.perf_counter()
        loss_total = torch.zeros((), dtype=torch.float32, device=self.device)  # stays on the device
        kl_total = torch.zeros((), dtype=torch.float32, device=self.device)
        samples, micro = 0, 0
        for (x, y), last in _with_last(batches):
            x, y = self._to_device(x, y)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            micro += 1
            sync = micro == t.accum_steps or last
            # DDP all-reduces on every backward; skip it on micro-batches whose gradients only accumulate.
            ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
            with ctx:
                with self.precision.autocast():
                    logits = self.model(x)
                loss = self.loss_fn(logits, y)
                if self.teacher is not None:
                    with torch.no_grad(), self.precision.autocast():
                        teacher_logits = self.teacher(x)
                    loss, kl = distillation_loss(logits, teacher_logits, loss, self.distill_temperature,
                                                 self.distill_alpha)
                    kl_total += kl * x.shape[0]
                if self.nan_at_step is not None and self.nan_at_step == self.global_step:
                    loss = loss * float("nan")
                self.guard.observe(loss, self.global_step)
                self.scaler.scale(loss / t.accum_steps).backward()
            loss_total += loss.detach().float() * x.shape[0]
            samples += x.shape[0]
            if sync:
                self._optimizer_step(micro)
                micro = 0
        self._check_finite()  # also the epoch's one host sync, so the time below is real
        elapsed = time.perf_counter() - start
        self.epoch += 1
        out = {"train_loss": loss_total.item() / max(samples, 1), "lr": self.schedule.last_lr,
               "images_per_s": samples / max(elapsed, 1e-9), "epoch_time_s": elapsed,
               "global_step": self.global_step}
        if self.teacher is not None:  # the student's mean KL to the teacher at temperature T (this rank's batches)
            out["train_kl_teacher"] = kl_total.item() / max(samples, 1)
        if t.freeze_backbone_epochs > 0:  # only then: a plain run's metric set stays as it was
            out["backbone_frozen"] = 1.0 if frozen else 0.0
        return out

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], *, use_ema: bool = False, prefix: str = "val_") -> dict[str, Any]:
        """Metrics of the raw (or EMA) weights over `batches`, summed over all ranks in one collective."""
        if use_ema and self.ema is None:
            raise ValueError("use_ema=True but train.ema is off")
        # The plain module, not DDP: DDP's forward may broadcast buffers, and ranks can have unequal batch counts.
        model = self.ema.module if use_ema else self.module
        was_training = model.training
        model.eval()
        acc = MetricAccumulator(self.num_classes, self.device)
        for x, y in batches:
            x, y = self._to_device(x, y)
            with self.precision.autocast():
                logits = model(x)
            logits = logits.float()
            # Plain cross entropy (no label smoothing) so val_loss is comparable across configs.
            acc.update(logits, y, F.cross_entropy(logits, y, reduction="sum"))
        model.train(was_training)
        acc.all_reduce()
        return acc.compute(prefix)

    def validate_and_select(self, batches_factory: Callable[[], Iterable[Batch]]) -> dict[str, Any]:
        """Evaluate raw and EMA weights, keep the better by train.monitor, update best/plateau/early stopping."""
        key = self.cfg.train.monitor
        raw = self.evaluate(batches_factory())
        selected, source = raw, "raw"
        extra: dict[str, Any] = {"val_acc_raw": raw["val_acc"], f"{key}_raw": raw[key]}
        if self.ema is not None:
            ema = self.evaluate(batches_factory(), use_ema=True)
            extra.update({"val_acc_ema": ema["val_acc"], f"{key}_ema": ema[key]})
            if self._better(ema[key], raw[key]):
                selected, source = ema, "ema"
        metric = selected[key]
        is_best = self.best_metric is None or self._better(metric, self.best_metric)
        if is_best:
            self.best_metric, self.best_epoch, self.best_source = metric, self.epoch, source
        # The lr drives the raw weights; the EMA lags them by ~1/(1-decay) steps.
        self.schedule.step_epoch(raw[key])
        if self.early_stopping is not None:
            self.should_stop = self.early_stopping.step(metric)
        return {**selected, **extra, "weights": source, "is_best": is_best, "should_stop": self.should_stop,
                "best_metric": self.best_metric, "best_epoch": self.best_epoch, "epoch": self.epoch}

    def weights_state(self, source: str = "raw") -> dict[str, Tensor]:
        """CPU copy of the raw or EMA weights (a snapshot: later training does not change it)."""
        if source not in ("raw", "ema"):
            raise ValueError(f"source must be 'raw' or 'ema', got {source!r}")
        if source == "ema" and self.ema is None:
            raise ValueError("source='ema' but train.ema is off")
        module = self.module if source == "raw" else self.ema.module
        return {k: v.detach().to("cpu", copy=True) for k, v in _strip_compile_prefix(module.state_dict()).items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain state for torch.save / torch.load(weights_only=True)."""
        return {
            "model": _strip_compile_prefix(self.module.state_dict()),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_source": self.best_source,
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping is not None else None,
            "should_stop": self.should_stop,
            "rng": rng_state(),
        }

    def load_state_dict(self, sd: dict[str, Any], *, restore_rng: bool = True) -> None:
        """Restore state_dict(); tensors may come from any device (map_location='cpu' is fine)."""
        self.module.load_state_dict(_strip_compile_prefix(sd["model"]))
        if self.ema is not None and sd.get("ema") is not None:
            self.ema.load_state_dict(sd["ema"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.schedule.load_state_dict(sd["schedule"])  # after the optimizer: it rewrites the groups' lrs
        if sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
        self.epoch, self.global_step = int(sd["epoch"]), int(sd["global_step"])
        self.best_metric, self.best_epoch, self.best_source = sd["best_metric"], sd["best_epoch"], sd["best_source"]
        if self.early_stopping is not None and sd.get("early_stopping") is not None:
            self.early_stopping.load_state_dict(sd["early_stopping"])
        self.should_stop = bool(sd.get("should_stop", False))
        if restore_rng and sd.get("rng") is not None:
            set_rng_state(sd["rng"])
