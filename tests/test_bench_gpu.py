"""`cnnray bench train --gpu`: refused clearly without CUDA; its table names every figure and goal."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_bench_without_cuda_exits_2():
    p = subprocess.run([sys.executable, "-m", "cnnray.cli", "bench", "train", "--gpu"], capture_output=True, text=True)
    assert p.returncode == 2 and "no CUDA GPU" in p.stderr
    p = subprocess.run([sys.executable, "-m", "cnnray.cli", "bench", "data", "--gpu"], capture_output=True, text=True)
    assert p.returncode == 2 and "bench train" in p.stderr


def test_gpu_table_names_every_row_and_goal():
    from cnnray.bench.gpu import _RATIOS, _ROWS, format_gpu_bench

    r = {"device": "GPU-X", "torch": "9.9"} | {k: 1000.0 + i for i, (k, _) in enumerate(_ROWS)}
    r |= {k: 0.5 for k, _, _ in _RATIOS}
    text = format_gpu_bench(r)
    assert "GPU-X" in text and "torch 9.9" in text
    assert all(label in text for _, label in _ROWS) and text.count("(goal >= ") == len(_RATIOS)
    quick = format_gpu_bench({"device": "d", "torch": "t", "engine_over_lean": 1.0})
    assert "Engine / lean loop, resnet18 eager" in quick and "compiled" not in quick


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bench_quick_on_cuda():
    from cnnray.bench.gpu import run_gpu_bench

    r = run_gpu_bench(quick=True)
    assert r["engine_resnet18_bf16_cl"] > 0 and r["engine_over_lean"] > 0
