"""`cnnray bench serve`: online serving throughput and latency, `cnnray serve` (1 and 2 replicas) against
`mlflow models serve` of the same registered version, over loopback, on the same request body.

One version of the default model (cbam_resnet18 width 0.25 at 32 px, digits classes; weights at their seeded
initialisation: the cost of a forward pass does not depend on what was learned) is registered in a
throwaway SQLite store. Each server is started as users start it, then closed-loop clients (each on its
own keep-alive connection) post one base64 PNG per request at concurrency 1, 8 and 32, for a fixed time
after a warm-up. Servers run one after another on the same machine; the ratio is requests/s of
`cnnray serve` over `mlflow models serve` at the same concurrency; `batch` is the mean requests per
forward pass that `cnnray serve`'s gateway sent (from its /status).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnray.bench.http_load import run_load
from cnnray.bench.mlflow_server import free_port
from cnnray.tracking.lineage import host_cpu

CONCURRENCY = (1, 8, 32)
MODEL = "bench-serve"


def _register(root: Path, model_name: str, image_size: int) -> tuple[str, bytes]:
    """(tracking URI, request body) for a freshly registered version @champion."""
    # deferred (heavy import): torch, PIL
    import torch
    from PIL import Image

    from cnnray.classifier.card import card_for_training
    from cnnray.config import load_config
    from cnnray.data import describe_dataset, load_arrays
    from cnnray.data.example import example_image
    from cnnray.models.from_config import build_model
    from cnnray.tracking.model_registry import register_weights

    cfg = load_config(overrides=[f"model.name={model_name}", f"data.image_size={image_size}"])
    info = describe_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, info.num_classes, info.channels).eval()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(root)  # the local artifact store lives under ./mlruns
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            register_weights(uri, "bench-serve", "bench-serve", model.state_dict(),
                             card_for_training(cfg, info, lineage={}, training={}),
                             example=example_image(cfg.data, 1), registered_name=MODEL, alias="champion")
    finally:
        os.chdir(cwd)
    img = load_arrays(cfg.data)[2][0, 0].numpy()  # a validation digit, 8x8 uint8: the server resizes it
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(buf.getvalue()).decode()]]}}
    return uri, json.dumps(body).encode()


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _server(cmd: list[str], health: str, root: Path, env: dict[str, str], tag: str) -> Iterator[None]:
    log = root / f"{tag}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)
    try:
        _wait(health, proc, log)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _batching(base: str) -> tuple[int, float]:
    """(batches, requests in them) so far, from the gateway's /status; (0, 0) for a server without one."""
    try:
        with urllib.request.urlopen(f"{base}/status", timeout=10) as r:
            g = json.loads(r.read()).get("gateway") or {}
    except (OSError, ValueError):
        return 0, 0.0
    return int(g.get("batches") or 0), float(g.get("batches") or 0) * float(g.get("mean_batch") or 0)


def _measure(base: str, body: bytes, seconds: float, warmup: float) -> list[dict[str, Any]]:
    rows = []
    for c in CONCURRENCY:
        run_load(f"{base}/invocations", body, c, seconds=warmup)
        b0, n0 = _batching(base)
        r = run_load(f"{base}/invocations", body, c, seconds=seconds)
        b1, n1 = _batching(base)
        rows.append({"concurrency": c, "requests": len(r.answers), "ok": r.count(200),
                     "errors": len(r.answers) - r.count(200), "requests_per_s": r.requests_per_s(),
                     "p50_ms": r.latency_ms(0.50), "p99_ms": r.latency_ms(0.99),
                     "mean_batch": (n1 - n0) / (b1 - b0) if b1 > b0 else None})
    return rows


def run_serve_bench(seconds: float = 10.0, warmup: float = 2.0, model_name: str = "cbam_resnet18",
                    image_size: int = 32, max_batch_size: int = 32, batch_wait_ms: float = 2.0) -> dict[str, Any]:
    """Start each server in turn on one registered version and measure it; rows per server and concurrency."""
    cpus = os.cpu_count() or 1
    bindir = str(Path(sys.executable).parent)
    servers: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-serve-") as tmp:
        root = Path(tmp)
        uri, body = _register(root, model_name, image_size)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
               "CNNRAY_SERVE_DIR": str(root / "serve-state")}
        mlflow_exe = shutil.which("mlflow", path=bindir) or "mlflow"
        port = free_port()
        with _server([mlflow_exe, "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
                      "-h", "127.0.0.1", "-p", str(port), "-w", "1"], f"http://127.0.0.1:{port}/ping", root, env,
                     "mlflow"):
            servers["mlflow models serve (1 worker)"] = _measure(f"http://127.0.0.1:{port}", body, seconds, warmup)
        cnnray_exe = shutil.which("cnnray", path=bindir) or "cnnray"
        # One CPU (one torch thread) per replica, the default: a replica given every core competes for them
        # with Serve's proxy and gateway and runs slower (measured: x0.4 at concurrency 32 on 2 cores).
        for replicas, per in ((1, 1.0), (2, 1.0)):
            port = free_port()
            with _server([cnnray_exe, "serve", "--model", f"models:/{MODEL}@champion", f"tracking.uri={uri}",
                          "--name", f"bench-{replicas}", "--replicas", str(replicas), "--cpus-per-replica", f"{per:g}",
                          "--max-batch-size", str(max_batch_size), "--batch-wait-ms", f"{batch_wait_ms:g}",
                          "--port", str(port)], f"http://127.0.0.1:{port}/health", root, env, f"cnnray-{replicas}"):
                servers[f"cnnray serve ({replicas} replica{'s' if replicas > 1 else ''})"] = _measure(
                    f"http://127.0.0.1:{port}", body, seconds, warmup)
    base = {r["concurrency"]: r["requests_per_s"] for r in servers["mlflow models serve (1 worker)"]}
    for rows in servers.values():
        for r in rows:
            r["ratio_vs_mlflow"] = r["requests_per_s"] / base[r["concurrency"]] if base[r["concurrency"]] else None
    one = next(r for r in servers["cnnray serve (1 replica)"] if r["concurrency"] == 32)
    return {"model": model_name, "image_size": image_size, "cpus": cpus, "cpu_flags": host_cpu(),
            "seconds": seconds, "max_batch_size": max_batch_size, "batch_wait_ms": batch_wait_ms,
            "servers": servers, "goal_ratio_at_32": 1.5, "ratio_at_32": one["ratio_vs_mlflow"],
            "goal_met": bool(one["ratio_vs_mlflow"] and one["ratio_vs_mlflow"] >= 1.5)}


def format_serve_bench(r: dict[str, Any]) -> str:
    """The table: requests/s, p50 and p99 per server and concurrency, and the ratio against mlflow models serve."""
    lines = [f"{r['model']} at {r['image_size']} px, one base64 PNG per request, {r['seconds']:g} s per row, "
             f"{r['cpus']} CPUs ({r['cpu_flags']}); batching: up to {r['max_batch_size']} requests, "
             f"{r['batch_wait_ms']:g} ms wait",
             f"{'server':32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'x mlflow':>8} "
             f"{'batch':>6}"]
    for name, rows in r["servers"].items():
        for row in rows:
            ratio = f"{row['ratio_vs_mlflow']:.2f}" if row["ratio_vs_mlflow"] is not None else "-"
            batch = f"{row['mean_batch']:.1f}" if row.get("mean_batch") else "-"
            lines.append(f"{name:32} {row['concurrency']:>4} {row['requests_per_s']:>8.1f} {row['p50_ms']:>8.1f} "
                         f"{row['p99_ms']:>8.1f} {row['errors']:>6} {ratio:>8} {batch:>6}")
    lines.append(f"cnnray serve (1 replica) / mlflow models serve at concurrency 32: x{r['ratio_at_32']:.2f} "
                 f"(goal >= {r['goal_ratio_at_32']}: {'met' if r['goal_met'] else 'NOT met'})")
    return "\n".join(lines)
