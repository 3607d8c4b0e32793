"""Prediction through the registered pyfunc against a plain `model(x)` on the same weights.

The pyfunc path is what `mlflow models serve` and `mlflow.pyfunc.load_model` run: uint8 images in,
resize/convert/normalize as training did, the network, softmax and top-k, a DataFrame out. The
baseline is the bare network on an already normalized float batch (fp32, eval, no_grad). Both use
the same weights, threads and batch; the ratio is pyfunc throughput / plain throughput.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.config import load_config
from cnnray.models.from_config import build_model


def _median_s(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _paired(a: Any, b: Any, rounds: int) -> dict[str, float]:
    """Median seconds of `a` and of `b` timed in alternating order, and the median of per-round b/a."""
    ta, tb = [], []
    for r in range(rounds):
        for fn, out in ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return {"a": statistics.median(ta), "b": statistics.median(tb),
            "ratio": statistics.median(y / x for x, y in zip(ta, tb))}


def run_predict_bench(model_name: str = "cbam_resnet18", image_size: int = 32, batch: int = 256,
                      single_repeats: int = 50, batch_repeats: int = 7) -> dict[str, Any]:
    """Register a model in a throwaway MLflow store, load it as pyfunc, time it against model(x)."""
    # deferred (heavy import): pyarrow, pandas, PIL
    import pandas as pd
    from PIL import Image

    from cnnray.classifier.card import card_for_training
    from cnnray.data import build_transforms, describe_dataset, load_arrays
    from cnnray.data.example import example_image
    from cnnray.tracking.model_registry import register_weights
    from cnnray.tracking.model_store import load_pyfunc

    cfg = load_config(overrides=[f"model.name={model_name}", f"data.image_size={image_size}"])
    info = describe_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, info.num_classes, info.channels).eval()
    card = card_for_training(cfg, info, lineage={}, training={})
    images = load_arrays(cfg.data)[2]  # validation images, uint8 [N,1,S,S]
    reps = (batch + len(images) - 1) // len(images)
    x_uint8 = images.repeat(reps, 1, 1, 1)[:batch]
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        cwd = os.getcwd()
        os.chdir(tmp)  # local artifact stores live under ./mlruns
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                register_weights(uri, "bench", "bench", model.state_dict(), card, example=example_image(cfg.data, 1),
                                 registered_name="bench", alias="champion")
                pyfunc = load_pyfunc("models:/bench@champion", uri)
        finally:
            os.chdir(cwd)
        _, eval_tf = build_transforms(cfg.data, info)
        x_float = eval_tf(x_uint8)  # the plain path gets its input already normalized
        nhw = x_uint8[:, 0].numpy()
        pngs = []
        for im in nhw[:64]:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            pngs.append(base64.b64encode(buf.getvalue()).decode())
        frame = pd.DataFrame({"image": pngs})

        def plain(x: torch.Tensor) -> None:
            with torch.no_grad():
                model(x)

        for _ in range(3):  # warm-up: allocator, oneDNN kernels
            pyfunc.predict(nhw[:1]), plain(x_float[:1]), pyfunc.predict(nhw), plain(x_float)
        # Interleaved rounds (order alternating): a change in machine load hits both paths alike, and the
        # ratio is the median of per-round ratios.
        single = _paired(lambda: pyfunc.predict(nhw[:1]), lambda: plain(x_float[:1]), single_repeats)
        batched = _paired(lambda: pyfunc.predict(nhw), lambda: plain(x_float), batch_repeats)
        png_s = _median_s(lambda: pyfunc.predict(frame), batch_repeats)
        out = pyfunc.predict(nhw[:4], params={"return_logits": True})
        with torch.no_grad():
            same = np.allclose(np.stack(out["logits"].to_list()), model(x_float[:4]).numpy(), rtol=1e-3, atol=1e-3)
    return {"model": model_name, "image_size": image_size, "batch": batch, "threads": torch.get_num_threads(),
            "single_repeats": single_repeats, "batch_repeats": batch_repeats,
            "single_ms_pyfunc": 1000 * single["a"], "single_ms_plain": 1000 * single["b"],
            "single_ratio": single["ratio"],
            "batch_imgs_per_s_pyfunc": batch / batched["a"], "batch_imgs_per_s_plain": batch / batched["b"],
            "batch_ratio": batched["ratio"], "png_base64_imgs_per_s": len(pngs) / png_s,
            "same_logits": bool(same)}


def format_predict_bench(r: dict[str, Any]) -> str:
    """A few lines: latency and throughput of both paths and their ratio."""
    return "\n".join([
        f"prediction: {r['model']} {r['image_size']}px, {r['threads']} threads, pyfunc (uint8 images in, "
        f"DataFrame out) vs plain model(x) on normalized floats, same weights (logits equal: {r['same_logits']})",
        f"  single image, median of {r['single_repeats']}: pyfunc {r['single_ms_pyfunc']:.2f} ms, "
        f"plain {r['single_ms_plain']:.2f} ms (speed pyfunc/plain {r['single_ratio']:.2f}x)",
        f"  batch {r['batch']}, median of {r['batch_repeats']}: pyfunc {r['batch_imgs_per_s_pyfunc']:.0f} img/s, "
        f"plain {r['batch_imgs_per_s_plain']:.0f} img/s, throughput pyfunc/plain {r['batch_ratio']:.2f}x "
        "(median of per-round ratios; goal >= 0.9x)",
        f"  base64 PNG DataFrame of 64: {r['png_base64_imgs_per_s']:.0f} img/s through the pyfunc",
    ])
