"""`cnnray bench compress`: every `cnnray compress` method on one trained model, in one command.

The default model is trained on digits with `cnnray train`'s defaults (or a smaller setting for a quick
run), registered in a throwaway MLflow store, and each method is run through `compress_version`, the
command's own code path: the same gate, the same measurement (median of N timed calls after warm-up,
batch 1 latency and batch 64 throughput, the same thread count), so each ratio compares the method's
network with the fp32 eager source measured in the same call. `quantize` is timed through torch.compile
(its int8 kernels are reached only there); the `fp32 compiled` row times the source network through the
same compiler, so the int8 gain beyond compilation is visible.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from cnnray.config import load_config
from cnnray.tracking.uri import parse_model_uri

GOALS = {"quantize": ("speedup_b64", 2.0), "fuse": ("speedup_b64", 1.2), "prune": ("speedup_b64", 1.5)}
METHODS = ("fuse", "quantize", "prune", "distill", "export")


def _train(overrides: list[str], run_dir: Path, uri: str) -> dict[str, Any]:
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.run.training import run_training

    cfg = load_config(overrides=[*overrides, f"tracking.uri={uri}", "tracking.experiment=bench-compress",
                                 "registry.name=bench-compress", "registry.alias=champion", "run.name=bench-source",
                                 f"scaling.storage_path={run_dir}"])
    result = run_training(cfg, on_line=lambda line: None)
    if result["status"] != "FINISHED":
        raise RuntimeError(f"bench compress: training the source model failed: {result.get('error')}")
    return result


def _fp32_compiled(uri: str, threads: int, repeats: int) -> dict[str, Any]:
    """The source network through torch.compile (inductor, freezing), timed like the methods."""
    # deferred (heavy import): torch, PIL
    from cnnray.compress.measure import measure_latency
    from cnnray.compress.quantize import compiled
    from cnnray.serve.data import data_config_for, load_split
    from cnnray.tracking.model_store import load_version

    clf, _ = load_version("models:/bench-compress/1", uri, channels_last=False)
    example = clf.transform(load_split(data_config_for(clf.card, []), "val").x[:64])
    eager = measure_latency(clf.model, example, repeats=repeats, threads=threads)
    fast = measure_latency(compiled(clf.model), example, repeats=repeats, threads=threads)
    return {"speedup_b64": fast["throughput_ips"] / eager["throughput_ips"],
            "latency_ratio_b1": eager["latency_median_s"] / fast["latency_median_s"]}


def run_compress_bench(quick: bool = False, threads: int = 1, repeats: int = 20,
                       methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Train, register, compress with each method; returns the figures of every row."""
    # deferred (heavy import): torch, PIL
    from cnnray.compress.job.candidates import CompressOptions
    from cnnray.compress.job.main import compress_version
    from cnnray.serve.options import CommandKeys

    small = ["data.image_size=16", "model.width=0.125", "train.epochs=2", "train.batch_size=64"]
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-compress-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        cwd = os.getcwd()
        os.chdir(tmp)  # local artifact stores live under ./mlruns
        try:
            source = _train(small if quick else [], Path(tmp) / "runs", uri)
            keys = CommandKeys([], uri, "bench-compress")
            training = [f"scaling.storage_path={Path(tmp) / 'runs'}"] + (["train.epochs=1"] if quick else [])
            for method in methods:
                work = Path(tmp) / method
                work.mkdir()
                opts = CompressOptions(training=training, calibration=128 if quick else 512)
                with contextlib.redirect_stdout(io.StringIO()):
                    rows[method] = compress_version(parse_model_uri("models:/bench-compress/1"), keys, method, work,
                                                    max_acc_drop=100.0, tolerance=1e-3, alias=None, threads=threads,
                                                    repeats=repeats, opts=opts, on_line=print)
            fp32c = _fp32_compiled(uri, threads, repeats) if "quantize" in methods else None
        finally:
            os.chdir(cwd)
    return {"source_val_acc": source["best_metrics"].get("val_acc"), "quick": quick, "threads": threads,
            "repeats": repeats, "rows": {m: r["evidence"] for m, r in rows.items()}, "fp32_compiled": fp32c}


def _goal(method: str, e: dict[str, Any]) -> str:
    if method == "distill":
        quarter = e["params"] <= 0.3 * e["params_source"]
        ok = quarter and e["acc_delta_points"] >= -1.0
        return f"1/4 params within 1 pt: {'met' if ok else 'NOT met'}"
    if method not in GOALS:
        return ""
    key, want = GOALS[method]
    ok = e[key] >= want and e["acc_delta_points"] >= -1.0
    return f">= {want:g}x within 1 pt: {'met' if ok else 'NOT met'}"


def format_compress_bench(r: dict[str, Any]) -> str:
    """The table: method, size, parameters, latency and throughput ratios vs fp32 eager, accuracy delta, goal."""
    lines = [f"compression of the default model on digits (source val_acc {100 * (r['source_val_acc'] or 0):.2f}%), "
             f"{r['threads']} thread(s), median of {r['repeats']} timed calls; ratios against the fp32 eager source "
             "measured in the same call",
             f"  {'method':<15}{'size MB':>9}{'file MB':>9}{'params':>10}{'b1 speed':>10}{'b64 speed':>11}"
             f"{'acc delta':>11}  goal"]
    for method, e in r["rows"].items():
        b1 = e["latency_b1_ms_source"] / e["latency_b1_ms"]
        lines.append(f"  {method:<15}{e['size_mb']:>9.3f}{e['file_mb']:>9.3f}{e['params']:>10,}{b1:>9.2f}x"
                     f"{e['speedup_b64']:>10.2f}x{e['acc_delta_points']:>+10.2f}  {_goal(method, e)}")
    if r["rows"]:
        e = next(iter(r["rows"].values()))
        lines.insert(2, f"  {'fp32 eager':<15}{e['size_mb_source']:>9.3f}{e['file_mb_source']:>9.3f}"
                        f"{e['params_source']:>10,}{1:>9.2f}x{1:>10.2f}x{0:>+10.2f}  (the source)")
    if r.get("fp32_compiled"):
        c = r["fp32_compiled"]
        lines.append(f"  {'fp32 compiled':<15}{'':>9}{'':>9}{'':>10}{c['latency_ratio_b1']:>9.2f}x"
                     f"{c['speedup_b64']:>10.2f}x{0:>+10.2f}  (torch.compile alone, for the int8 row)")
    return "\n".join(lines)
