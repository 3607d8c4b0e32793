"""The candidate each `cnnray compress` method produces from a loaded source version: the card and weights
to register, files to attach, checks, and the network whose speed is measured. fuse/export/quantize run in
this process; prune fine-tunes and distill trains through an ordinary cnnray training run
(`cnnray.compress.job.runs`), tracked in MLflow like any other."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from cnnray.classifier.card import ModelCard
from cnnray.compress.export import check_parity, export_onnx, run_onnx
from cnnray.compress.methods import apply_method
from cnnray.compress.onnx_int8 import quantize_onnx
from cnnray.compress.prune import prune_channels
from cnnray.compress.quantize import compiled, int8_size, quantize_pt2e
from cnnray.compress.unstructured import prune_unstructured
from cnnray.models.from_config import model_kwargs
from cnnray.serve.data import load_split


@dataclass
class CompressOptions:
    """The method-specific options of `cnnray compress` (defaults: the command's)."""

    amount: float = 0.5  # prune: fraction of each pruned conv's channels removed
    criterion: str = "l1"  # prune: l1 | bn_gamma
    temperature: float = 4.0  # distill
    alpha: float = 0.7  # distill: weight of the soft (KL x T^2) term
    calibration: int = 512  # quantize: training images the activation ranges are calibrated on
    onnx_int8: bool = False  # quantize: also ONNX Runtime's int8 model of the exported file
    compile: bool = True  # quantize: measure speed through torch.compile (how int8 kernels are reached)
    qat: bool = False  # quantize: quantization-aware fine-tune (a training run) before the int8 conversion
    unstructured: bool = False  # prune: zero the smallest weights instead of removing channels (no fine-tune)
    training: list[str] = field(default_factory=list)  # prune/distill: train.*, optim.*, ... (model.*: student)


@dataclass
class Candidate:
    """What the gate and the registry need."""

    card: ModelCard
    weights: dict[str, Tensor]
    files: dict[str, Path] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # method-specific figures for the tags
    speed_model: Callable[[Tensor], Any] | None = None  # timed instead of the rebuilt network (compiled int8)


def compressed_card(source: ModelCard, compression: dict[str, Any], source_label: str, *,
                    student: tuple[str, dict[str, Any]] | None = None) -> ModelCard:
    """The source's card with the compression entry (format 2: an older cnnray refuses rather than misloads).
    A distilled student replaces the architecture and its options and adds no structure step."""
    tag = "cnnray.compress."
    lineage = {**source.lineage, f"{tag}source": source_label, f"{tag}method": str(compression.get("method"))}
    steps = list(source.compression.get("steps", [])) if student is None else []
    if compression.get("method") not in ("distill",):
        steps.append(compression)
    entry = {"method": compression.get("method"), "steps": steps, "source": source_label,
             **({k: v for k, v in compression.items() if k not in ("method", "steps")} if student else {})}
    card = dataclasses.replace(source, compression=entry, format_version=2, lineage=lineage, weights_sha256="")
    if student is not None:
        card = dataclasses.replace(card, architecture=student[0], model_kwargs=dict(student[1]))
    return card


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def make_candidate(method: str, clf: Any, label: str, data: Any, keys: Any, example: Tensor, work_dir: Path,
                   opts: CompressOptions, on_line: Callable[[str], None]) -> Candidate:
    """Run `method` on the loaded source (`clf`, an ImageClassifier) and return its candidate."""
    if method in ("fuse", "export"):
        c = apply_method(method, clf.model, example, work_dir)
        return Candidate(compressed_card(clf.card, c.compression, label), _state(c.model), c.files, c.checks)
    if method == "quantize":
        return _quantize(clf, label, data, keys, example, work_dir, opts, on_line)
    if method == "prune" and opts.unstructured:
        return _prune_unstructured(clf, label, opts)
    if method == "prune":
        return _prune(clf, label, data, keys, opts, on_line)
    return _distill(clf, label, data, keys, opts, on_line)


def _calibration(clf: Any, data: Any, n: int) -> Tensor:
    split = load_split(data, "train")
    if split.x.shape[0] == 0:
        raise ValueError("quantize: the training split is empty: nothing to calibrate on")
    g = torch.Generator().manual_seed(0)  # a fixed draw: the same version calibrates the same way twice
    idx = torch.randperm(split.x.shape[0], generator=g)[:n]
    return clf.transform(split.x[idx])


def _qat(clf: Any, label: str, data: Any, keys: Any, opts: CompressOptions,
         on_line: Callable[[str], None]) -> tuple[nn.Module, dict[str, Any]]:
    """The source fine-tuned under fake quantization (a training run); returns its fp32 network and figures."""
    # deferred (heavy import): pyarrow
    from cnnray.compress.job.runs import run_compress_training

    cfg = _training_cfg("quantize", clf, label, data, keys, opts)
    c = clf.card.input
    on_line(f"quantization-aware fine-tune: {cfg.train.epochs} epoch(s) as run {cfg.run.name}")
    weights, result = run_compress_training(cfg, init_weights=_state(clf.model),
                                            qat={"input_shape": [c.channels, c.image_size, c.image_size]},
                                            on_line=on_line)
    tuned = copy.deepcopy(clf.model)
    tuned.load_state_dict(weights, strict=True)
    return tuned.eval(), {"train_run_id": result.get("run_id"), "train_epochs": result.get("epochs_run"), "qat": True}


def _quantize(clf: Any, label: str, data: Any, keys: Any, example: Tensor, work_dir: Path, opts: CompressOptions,
              on_line: Callable[[str], None]) -> Candidate:
    model, trained = _qat(clf, label, data, keys, opts, on_line) if opts.qat else (clf.model, {})
    calib = _calibration(clf, data, opts.calibration)
    q = quantize_pt2e(model, calib)
    size = int8_size(q.model)
    evidence: dict[str, Any] = {**trained, "calibration_images": int(calib.shape[0]), "int8_size_mb": size["size_mb"],
                                "int8_params": size["params"],
                                "dynamic_head": q.step.get("dynamic_head"),
                                "speed_path": "torch.compile (inductor, freezing)" if opts.compile else "eager"}
    files: dict[str, Path] = {}
    checks: dict[str, Any] = {}
    if opts.onnx_int8:
        fp32 = export_onnx(model, example[:1], work_dir / "model_fp32.onnx")
        files["onnx_int8"] = quantize_onnx(fp32, calib.numpy(), work_dir / "model.int8.onnx")
        with torch.no_grad():
            checks["onnx_int8_vs_fp32"] = check_parity(model(example), run_onnx(files["onnx_int8"], example))
        evidence["onnx_fp32_file_mb"] = fp32.stat().st_size / 2**20
    card = compressed_card(clf.card, {**q.step, "qat": opts.qat}, label)
    speed = compiled(q.model) if opts.compile else q.model
    return Candidate(card, dict(q.state), files, checks, evidence, speed)


def _trained(card: ModelCard, result: dict[str, Any]) -> ModelCard:
    # The card's training section describes the run that produced these weights, not the source's.
    best = result.get("best_metrics") or {}
    return dataclasses.replace(card, training={
        **card.training, "run_id": result.get("run_id"), "best_epoch": result.get("best_epoch"),
        "weights": result.get("weights"), "metrics": {k: best[k] for k in ("val_acc", "val_loss") if k in best}})


@torch.no_grad()
def _val_accuracy(model: nn.Module, clf: Any, data: Any) -> float:
    split = load_split(data, "val")
    model.eval()
    right = sum(int((model(clf.transform(split.x[i:i + 256])).argmax(1) == split.y[i:i + 256]).sum())
                for i in range(0, split.x.shape[0], 256))
    return right / max(1, split.x.shape[0])


def _training_cfg(method: str, clf: Any, label: str, data: Any, keys: Any, opts: CompressOptions) -> Any:
    # deferred (heavy import): pyarrow
    from cnnray.compress.job.runs import training_config

    return training_config(method, clf.card, data, keys.tracking_uri, keys.experiment, label, opts.training)


def _prune(clf: Any, label: str, data: Any, keys: Any, opts: CompressOptions,
           on_line: Callable[[str], None]) -> Candidate:
    # deferred (heavy import): pyarrow
    from cnnray.compress.job.runs import run_compress_training

    cfg = _training_cfg("prune", clf, label, data, keys, opts)  # checked before the pruning work
    pruned = prune_channels(clf.model, opts.amount, opts.criterion)
    step = pruned.step(opts.amount, opts.criterion)
    before = _val_accuracy(pruned.model, clf, data)  # what the fine-tune has to recover
    on_line(f"pruned {pruned.removed} channels ({opts.criterion}, amount {opts.amount:g}); fine-tuning "
            f"{cfg.train.epochs} epoch(s) as run {cfg.run.name}")
    weights, result = run_compress_training(cfg, structure=step, init_weights=_state(pruned.model), on_line=on_line)
    card = _trained(compressed_card(clf.card, step, label), result)
    return Candidate(card, weights,
                     evidence={"train_run_id": result.get("run_id"), "train_epochs": result.get("epochs_run"),
                               "pruned_channels": pruned.removed, "prune_amount": opts.amount,
                               "acc_before_finetune": before,
                               "prune_criterion": opts.criterion})


def _prune_unstructured(clf: Any, label: str, opts: CompressOptions) -> Candidate:
    model, frac = prune_unstructured(clf.model, opts.amount)
    step = {"method": "prune", "unstructured": True, "amount": opts.amount, "sparsity": frac}
    return Candidate(compressed_card(clf.card, step, label), _state(model),
                     evidence={"prune_amount": opts.amount, "sparsity": frac, "unstructured": True})


def _distill(clf: Any, label: str, data: Any, keys: Any, opts: CompressOptions,
             on_line: Callable[[str], None]) -> Candidate:
    # deferred (heavy import): pyarrow
    from cnnray.compress.job.runs import run_compress_training

    if opts.temperature <= 0 or not 0 <= opts.alpha <= 1:
        raise ValueError(f"--temperature must be > 0 (got {opts.temperature:g}) and --alpha in [0, 1] "
                         f"(got {opts.alpha:g})")
    cfg = _training_cfg("distill", clf, label, data, keys, opts)
    kwargs = {k: v for k, v in model_kwargs(cfg, clf.card.num_classes, clf.card.input.channels).items()
              if v is not None}
    on_line(f"distilling {label} into {cfg.model.name} ({kwargs}) for {cfg.train.epochs} epoch(s), T="
            f"{opts.temperature:g} alpha={opts.alpha:g}, as run {cfg.run.name}")
    teacher = {"card": dataclasses.asdict(clf.card), "weights": _state(clf.model),
               "temperature": opts.temperature, "alpha": opts.alpha}
    weights, result = run_compress_training(cfg, teacher=teacher, on_line=on_line)
    entry = {"method": "distill", "teacher": label, "temperature": opts.temperature, "alpha": opts.alpha}
    card = _trained(compressed_card(clf.card, entry, label, student=(cfg.model.name, kwargs)), result)
    return Candidate(card, weights, evidence={"train_run_id": result.get("run_id"),
                                              "train_epochs": result.get("epochs_run"),
                                              "temperature": opts.temperature, "alpha": opts.alpha,
                                              "student": cfg.model.name})
