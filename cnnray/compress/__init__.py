"""Compression and export of trained classifiers, plain PyTorch (no Ray, no MLflow).

    result = fuse_conv_bn(model)          # eval-mode copy with Conv-BN pairs folded; result.fused pairs
    measure_latency(result.model, batch, warmup=5, repeats=20, threads=1)
    export_onnx(result.model, batch, "model.onnx"); check_parity(model(batch), run_onnx("model.onnx", batch))
"""

from cnnray.compress.export import (ONNX_OPSET, check_parity, export_onnx, export_torchscript, onnx_runner,
                                    run_onnx)
from cnnray.compress.fuse import FuseResult, conv_bn_pairs, fuse_conv_bn
from cnnray.compress.measure import file_size_mb, flops, measure_latency, model_size

__all__ = [
    "FuseResult", "ONNX_OPSET", "check_parity", "conv_bn_pairs", "export_onnx", "export_torchscript",
    "file_size_mb", "flops", "fuse_conv_bn", "measure_latency", "model_size", "onnx_runner", "run_onnx",
]
