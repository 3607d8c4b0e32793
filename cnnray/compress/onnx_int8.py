"""Static int8 quantization of an exported ONNX file with onnxruntime (QDQ format), calibrated on real images.

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the format onnxruntime's CPU provider
fuses into int8 kernels and that other runtimes (TensorRT, OpenVINO) read; per-channel int8 weights,
uint8 activations (MinMax calibration) match the x86 recipe of `quantize.py`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class _Batches:
    """onnxruntime's CalibrationDataReader protocol: get_next() -> {input name: batch} or None when done."""

    def __init__(self, name: str, images: np.ndarray, batch: int) -> None:
        self._chunks = iter([{name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._chunks, None)


class _DropQuantizationNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # onnxruntime.quantization logs through the root logger ("consider pre-processing", shape inference
        # notes) on every call; keep errors, drop its notes and warnings.
        return not ("onnxruntime" in record.pathname and record.levelno <= logging.WARNING)


@contextmanager
def _quiet_root() -> Iterator[None]:
    note = _DropQuantizationNotes()
    root = logging.getLogger()
    root.addFilter(note)
    try:
        yield
    finally:
        root.removeFilter(note)


def _check(calibration: Any, batch: int) -> np.ndarray:
    images = np.asarray(calibration)
    if images.ndim != 4:
        raise ValueError(f"calibration must have shape (N, C, H, W), got shape {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("calibration is empty (0 images): static quantization needs real images to calibrate on")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(images).all():
        raise ValueError("calibration must be finite images (preprocessed as for training)")
    return images


def _pre_process(onnx_path: Path, work: Path) -> Path:
    """Shape inference + graph optimization before quantization, as onnxruntime recommends; the input if it fails."""
    # deferred (heavy import): onnxruntime
    from onnxruntime.quantization import quant_pre_process

    out = work / "preprocessed.onnx"
    # Symbolic shape inference fails on torch's dynamo exports (a Concat over the symbolic batch); onnx's own
    # shape inference is enough for a CNN, so that is the second try, and no pre-processing the last.
    for options in ({}, {"skip_symbolic_shape": True}):
        try:
            quant_pre_process(str(onnx_path), str(out), **options)
            return out
        except Exception:  # noqa: BLE001,S112 - an optimization: quantization works without it
            continue
    return onnx_path


def quantize_onnx(onnx_path: Path, calibration: np.ndarray, out_path: Path, *, batch: int = 8) -> Path:
    """Write an int8 QDQ copy of the ONNX file at `onnx_path` to `out_path`, calibrated on (N, C, H, W) images."""
    # deferred (heavy import): onnx, onnxruntime
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    images = _check(calibration, batch)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp, _quiet_root():
        source = _pre_process(onnx_path, Path(tmp))
        quantize_static(str(source), str(out_path), _Batches(name, images, batch), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        # 7-bit weights: without VNNI, x86's u8*s8 instruction (vpmaddubsw) saturates its int16
                        # pair sums; onnxruntime's docs advise reduce_range there, and a file must run anywhere.
                        reduce_range=True)
    return out_path
