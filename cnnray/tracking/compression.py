"""Register a compressed candidate as a new version of its source's registered model, with the evidence."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.serve.card import ModelCard
from cnnray.tracking.model_registry import RegisteredModel, register_weights

TAG = "cnnray.compress."


def compressed_card(source: ModelCard, compression: dict[str, Any], source_label: str) -> ModelCard:
    """The source's card with the compression entry (format 2: an older cnnray refuses rather than misloads)."""
    lineage = {**source.lineage, f"{TAG}source": source_label, f"{TAG}method": str(compression.get("method"))}
    steps = [*source.compression.get("steps", []), compression]  # a compressed source's structure stays
    entry = {"method": compression.get("method"), "steps": steps, "source": source_label}
    return dataclasses.replace(source, compression=entry, format_version=2, lineage=lineage, weights_sha256="")


def evidence_tags(evidence: dict[str, Any]) -> dict[str, str]:
    """`cnnray.compress.*` tags from a flat dict of figures (floats to 6 significant digits)."""
    return {f"{TAG}{k}": (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in evidence.items()
            if v is not None}


def register_compressed(tracking_uri: str, experiment: str, name: str, card: ModelCard,
                        weights: dict[str, torch.Tensor], *, example: np.ndarray, evidence: dict[str, Any],
                        files: dict[str, Path], alias: str | None) -> RegisteredModel:
    """A new version of `name`: the candidate's weights and card, the method's files, metrics and tags."""
    method = card.compression.get("method")
    metrics = {k: float(v) for k, v in evidence.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return register_weights(tracking_uri, experiment, f"compress-{method}-{card.compression.get('source', '')}"
                            .replace("models:/", "").replace("/", "-"), weights, card, example=example,
                            registered_name=name, alias=alias, tags=evidence_tags(evidence), metrics=metrics,
                            extra_files=files)


def _ms(seconds: float) -> float:
    return 1000.0 * seconds


def compress_version(ref: Any, keys: Any, method: str, work_dir: Path, *, max_acc_drop: float, tolerance: float,
                     alias: str | None, threads: int, repeats: int, on_line: Any = print) -> dict[str, Any]:
    """Load the version, run the method, gate it on the source's evaluation images, measure both, register
    the candidate if it passed. Returns the result object (`registered` False: refused, nothing written)."""
    from cnnray.compress.gate import decide
    from cnnray.compress.measure import file_size_mb, flops, measure_latency, model_size
    from cnnray.compress.methods import apply_method
    from cnnray.serve.classifier import ImageClassifier
    from cnnray.serve.data import check_classes, data_config_for, describe, example_image, load_split
    from cnnray.tracking.model_store import load_version

    clf, version = load_version(ref, keys.tracking_uri, channels_last=False)
    data = data_config_for(clf.card, keys.data)
    info = describe(data)
    check_classes(clf.card, tuple(info.class_names), f"data.source={data.source}")
    split = load_split(data.model_copy(update={"image_size": clf.card.input.image_size,
                                               "channels": clf.card.input.channels}), "val")
    example = clf.transform(split.x[:64])  # real images, preprocessed as the classifier does
    compressed = apply_method(method, clf.model, example, work_dir)
    card = compressed_card(clf.card, compressed.compression, version.label)
    weights = {k: v.detach().cpu().clone() for k, v in compressed.model.state_dict().items()}
    candidate = ImageClassifier(card, weights, channels_last=False)  # rebuilt from card + weights, as served
    gate = decide(method, clf.logits_uint8(split.x), candidate.logits_uint8(split.x), split.y.long(),
                  max_acc_drop=max_acc_drop, tolerance=tolerance, checks=compressed.checks)
    torch.save(weights, work_dir / "weights.pt")
    torch.save(clf.model.state_dict(), work_dir / "source_weights.pt")
    shape = (clf.card.input.channels, clf.card.input.image_size, clf.card.input.image_size)
    size, src_size = model_size(candidate.model), model_size(clf.model)
    lat = measure_latency(candidate.model, example, repeats=repeats, threads=threads)
    src_lat = measure_latency(clf.model, example, repeats=repeats, threads=threads)
    evidence: dict[str, Any] = {
        "method": method, "source": version.label, "n_eval": gate.parity["n"], "eval_data": data.source,
        "acc": gate.candidate_acc, "acc_source": gate.source_acc, "acc_delta_points": gate.delta_points,
        "max_abs_diff": gate.parity["max_abs_diff"], "top1_agreement": gate.parity["top1_agreement"],
        "size_mb": size["size_mb"], "size_mb_source": src_size["size_mb"], "params": size["params"],
        "params_source": src_size["params"], "file_mb": file_size_mb(work_dir / "weights.pt"),
        "file_mb_source": file_size_mb(work_dir / "source_weights.pt"), "flops": flops(candidate.model, shape),
        "flops_source": flops(clf.model, shape), "latency_b1_ms": _ms(lat["latency_median_s"]),
        "latency_b1_ms_source": _ms(src_lat["latency_median_s"]), "throughput_b64_ips": lat["throughput_ips"],
        "throughput_b64_ips_source": src_lat["throughput_ips"], "threads": threads, "repeats": repeats,
        "speedup_b64": lat["throughput_ips"] / src_lat["throughput_ips"]}
    for fmt in ("torchscript", "onnx"):
        if fmt in compressed.checks:
            evidence[f"{fmt}_max_abs_diff"] = compressed.checks[fmt]["max_abs_diff"]
            evidence[f"{fmt}_top1_agreement"] = compressed.checks[fmt]["top1_agreement"]
    for fmt, path in compressed.files.items():
        evidence[f"{fmt}_file_mb"] = file_size_mb(path)
    if "onnx_opset" in compressed.checks:
        evidence["onnx_opset"] = compressed.checks["onnx_opset"]
    on_line(_summary(version.label, method, evidence, gate))
    out: dict[str, Any] = {"source": version.label, "method": method, "registered": gate.passed,
                           "reasons": gate.reasons, "evidence": evidence}
    if not gate.passed:
        on_line("refused, nothing registered: " + "; ".join(gate.reasons))
        return out
    reg = register_compressed(keys.tracking_uri, keys.experiment, str(version.name), card, weights,
                              example=example_image(data, clf.card.input.channels), evidence=evidence,
                              files=compressed.files, alias=alias)
    on_line(f"registered {reg.name} version {reg.version}" + (f" as @{alias}" if alias else "")
            + f"  ({reg.model_uri})")
    out.update(name=reg.name, version=reg.version, alias=alias, model_uri=reg.model_uri)
    return out


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
         for fmt in ("torchscript", "onnx") if f"{fmt}_max_abs_diff" in e])
