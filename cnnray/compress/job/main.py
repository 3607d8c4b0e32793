"""`cnnray compress` end to end: load the source version (or take one in memory: `cnnray replay` passes the
replayed source), build the method's candidate (`candidates.py`), gate it on the source's validation images,
measure both, and register it (`cnnray.tracking.compression`) only if it passed and registration is asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnray.classifier.classifier import ImageClassifier
from cnnray.compress.checks import judge_candidate
from cnnray.compress.export import run_onnx
from cnnray.compress.job.candidates import Candidate, CompressOptions, make_candidate
from cnnray.compress.measure import file_size_mb, flops, measure_latency, model_size
from cnnray.errors import UserInputError
from cnnray.serve.data import check_classes, data_config_for, describe, load_split
from cnnray.tracking.compression import register_compressed
from cnnray.tracking.model_store import load_version


def _ms(seconds: float) -> float:
    return 1000.0 * seconds


@dataclass
class CompressOutcome:
    """What the job made: the result object (`cnnray compress --json`), the candidate, whether it passed the gate."""

    result: dict[str, Any]
    candidate: Candidate
    passed: bool


def compress_version(ref: Any, keys: Any, method: str, work_dir: Path, *, max_acc_drop: float, tolerance: float,
                     alias: str | None, threads: int, repeats: int, opts: Any = None,
                     on_line: Any = print, command: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the version, run the method, gate it on the source's evaluation images, measure both, register
    the candidate if it passed (with `command`, the options that shaped it, as a tag). Returns the result
    object (`registered` False: refused, nothing written)."""
    clf, version = load_version(ref, keys.tracking_uri, channels_last=False)
    return compress_classifier(clf, version.label, str(version.name), keys, method, work_dir,
                               max_acc_drop=max_acc_drop, tolerance=tolerance, alias=alias, threads=threads,
                               repeats=repeats, opts=opts, on_line=on_line, command=command).result


def compress_classifier(clf: ImageClassifier, label: str, name: str, keys: Any, method: str, work_dir: Path, *,
                        max_acc_drop: float, tolerance: float, alias: str | None, threads: int, repeats: int,
                        opts: Any = None, on_line: Any = print, register: bool = True,
                        command: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> CompressOutcome:
    """The job on a loaded source (`clf`, an ImageClassifier loaded with channels_last=False; `label`, the
    version it is; `name`, the registered model a result joins): run the method, gate, measure, and register
    the candidate if it passed and `register` (tagged with `command` and `tags`)."""
    # deferred (heavy import): pyarrow
    from cnnray.data.example import example_image

    opts = opts or CompressOptions()
    if any(s.get("method") == "quantize" for s in clf.card.compression.get("steps", [])):
        raise UserInputError(f"--model {label} is int8-quantized: compress its fp32 source instead")
    data = data_config_for(clf.card, keys.data)
    info = describe(data)
    check_classes(clf.card, tuple(info.class_names), f"data.source={data.source}")
    data = data.model_copy(update={"image_size": clf.card.input.image_size, "channels": clf.card.input.channels})
    split = load_split(data, "val")
    example = clf.transform(split.x[:64])  # real images, preprocessed as the classifier does
    try:
        cand = make_candidate(method, clf, label, data, keys, example, work_dir, opts, on_line)
    except ValueError as e:  # the methods' input checks (e.g. nothing to prune, a norm without gamma)

        raise UserInputError(f"--method {method} on {label}: {e}") from None
    candidate = ImageClassifier(cand.card, cand.weights, channels_last=False)  # rebuilt from card + weights, as served
    gate = judge_candidate(method, clf.logits_uint8(split.x), candidate.logits_uint8(split.x), split.y.long(),
                  max_acc_drop=max_acc_drop, tolerance=tolerance, checks=cand.checks)
    if "onnx_int8" in cand.files:  # an attached int8 file passes the same accuracy bound as the version
        _gate_file(gate, "ONNX Runtime int8 file", cand, clf, split, max_acc_drop)
    torch.save(cand.weights, work_dir / "weights.pt")
    torch.save(clf.model.state_dict(), work_dir / "source_weights.pt")
    shape = (clf.card.input.channels, clf.card.input.image_size, clf.card.input.image_size)
    size, src_size = model_size(candidate.model), model_size(clf.model)
    lat = measure_latency(cand.speed_model or candidate.model, example, repeats=repeats, threads=threads)
    src_lat = measure_latency(clf.model, example, repeats=repeats, threads=threads)
    evidence: dict[str, Any] = {
        "method": method, "source": label, "n_eval": gate.parity["n"], "eval_data": data.source,
        "acc": gate.candidate_acc, "acc_source": gate.source_acc, "acc_delta_points": gate.delta_points,
        "max_abs_diff": gate.parity["max_abs_diff"], "top1_agreement": gate.parity["top1_agreement"],
        "size_mb": size["size_mb"], "size_mb_source": src_size["size_mb"], "params": size["params"],
        "params_source": src_size["params"], "file_mb": file_size_mb(work_dir / "weights.pt"),
        "file_mb_source": file_size_mb(work_dir / "source_weights.pt"),
        "flops": flops(candidate.model, shape) if method != "quantize" else flops(clf.model, shape),
        "flops_source": flops(clf.model, shape), "latency_b1_ms": _ms(lat["latency_median_s"]),
        "latency_b1_ms_source": _ms(src_lat["latency_median_s"]), "throughput_b64_ips": lat["throughput_ips"],
        "throughput_b64_ips_source": src_lat["throughput_ips"], "threads": threads, "repeats": repeats,
        "speedup_b64": lat["throughput_ips"] / src_lat["throughput_ips"], **cand.evidence}
    if "int8_size_mb" in evidence:  # the int8 network's own tensors (its int8 weights are not nn.Parameters)
        evidence["size_mb"], evidence["params"] = evidence["int8_size_mb"], evidence["int8_params"]
    for fmt in ("torchscript", "onnx", "onnx_int8_vs_fp32"):
        if fmt in cand.checks:
            evidence[f"{fmt}_max_abs_diff"] = cand.checks[fmt]["max_abs_diff"]
            evidence[f"{fmt}_top1_agreement"] = cand.checks[fmt]["top1_agreement"]
    for fmt, path in cand.files.items():
        evidence[f"{fmt}_file_mb"] = file_size_mb(path)
    if "onnx_opset" in cand.checks:
        evidence["onnx_opset"] = cand.checks["onnx_opset"]
    on_line(_summary(label, method, evidence, gate))
    out: dict[str, Any] = {"source": label, "method": method, "registered": gate.passed and register,
                           "reasons": gate.reasons, "evidence": evidence}
    if not gate.passed:
        on_line("refused, nothing registered: " + "; ".join(gate.reasons))
        return CompressOutcome(out, cand, False)
    if not register:
        return CompressOutcome(out, cand, True)
    reg = register_compressed(keys.tracking_uri, keys.experiment, name, cand.card, cand.weights,
                              example=example_image(data, clf.card.input.channels), evidence=evidence,
                              files=cand.files, alias=alias, command=command, tags=tags)
    on_line(f"registered {reg.name} version {reg.version}" + (f" as @{alias}" if alias else "")
            + f"  ({reg.model_uri})")
    out.update(name=reg.name, version=reg.version, alias=alias, model_uri=reg.model_uri)
    return CompressOutcome(out, cand, True)


def _gate_file(gate: Any, what: str, cand: Any, clf: Any, split: Any, max_acc_drop: float) -> None:
    path = cand.files["onnx_int8"]
    logits = torch.cat([torch.as_tensor(run_onnx(path, clf.transform(split.x[i:i + 256]))) for i in range(0, split.x.shape[0], 256)])
    acc = float((logits.argmax(1) == split.y.long()).double().mean())
    delta = 100.0 * (acc - gate.source_acc)
    cand.evidence.update(onnx_int8_acc=acc, onnx_int8_acc_delta_points=delta)
    if -delta > max_acc_drop + 1e-9:
        gate.reasons.append(f"the {what} drops {-delta:.2f} points ({100 * gate.source_acc:.2f}% -> {100 * acc:.2f}%), "
                            f"more than --max-acc-drop {max_acc_drop:g}")
        gate.passed = False


def _summary(label: str, method: str, e: dict[str, Any], gate: Any) -> str:
    return "\n".join([
        f"{method} of {label}, checked on {e['n_eval']} {e['eval_data']} validation images:",
        f"  accuracy      {100 * e['acc_source']:.2f}% -> {100 * e['acc']:.2f}% ({e['acc_delta_points']:+.2f} points)",
        f"  outputs       max |logit diff| {e['max_abs_diff']:.3g}, top-1 agreement {e['top1_agreement']:.4f}",
        f"  parameters    {e['params_source']:,} -> {e['params']:,};  size {e['size_mb_source']:.3f} -> "
        f"{e['size_mb']:.3f} MB (weights file {e['file_mb_source']:.3f} -> {e['file_mb']:.3f} MB)",
        f"  FLOPs         {e['flops_source']:,} -> {e['flops']:,}",
        f"  CPU latency   batch 1 {e['latency_b1_ms_source']:.2f} -> {e['latency_b1_ms']:.2f} ms; batch 64 "
        f"{e['throughput_b64_ips_source']:.0f} -> {e['throughput_b64_ips']:.0f} img/s ({e['speedup_b64']:.2f}x), "
        f"{e['threads']} thread(s), median of {e['repeats']}",
    ] + [f"  {fmt:<13} max |logit diff| vs eager {e[f'{fmt}_max_abs_diff']:.3g}, file {e[f'{fmt}_file_mb']:.3f} MB"
         + (f", opset {e['onnx_opset']}, run by onnxruntime" if fmt == "onnx" else "")
         for fmt in ("torchscript", "onnx") if f"{fmt}_max_abs_diff" in e]
      + ([f"  onnx int8     accuracy {100 * e['onnx_int8_acc']:.2f}% ({e['onnx_int8_acc_delta_points']:+.2f} points), "
          f"file {e['onnx_int8_file_mb']:.3f} MB (fp32 ONNX {e['onnx_fp32_file_mb']:.3f} MB), run by onnxruntime"]
         if "onnx_int8_file_mb" in e else [])
      + ([f"  sparsity      {100 * e['sparsity']:.1f}% of conv/linear weights are zero (dense tensors: no size or "
          "speed change is claimed beyond what is measured above)"] if "sparsity" in e else [])
      + ([f"  trained       MLflow run {e['train_run_id']}, {e['train_epochs']} epoch(s)"
          + (f" (pruned, before fine-tuning: {100 * e['acc_before_finetune']:.2f}%)" if "acc_before_finetune" in e
             else "")] if e.get("train_run_id") else []))
