"""`cnnray bench cluster`: the cost of submission. The same short training run as `cnnray train` (its own
local Ray) and as `cnnray submit train` to a local 2-node cluster; whole-process wall time of each command.

The cluster is started once, before the timed runs, in its own state folder (it never touches a cluster
`cnnray cluster up` started), and stopped after; its start-up time is reported beside the ratio, not in it.
Runs alternate (direct, submitted, direct, ...) so that a machine getting busier hurts both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

# A short run on synthetic data: what is measured is the overhead around training, not training.
BENCH_TRAIN = ["data.source=synthetic", "data.num_classes=4", "data.samples_per_class=64", "data.image_size=16",
               "model.width=0.125", "train.batch_size=32", "train.epochs=2", "scaling.num_workers=2",
               "registry.enabled=false", "train.ema=false"]
_SCRUB = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnnray.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"`cnnray {' '.join(args[:2])}` exited {p.returncode}: {(p.stdout + p.stderr)[-2000:]}")
    return wall, p.stdout


def run_cluster_bench(rounds: int = 1, nodes: int = 2, cpus_per_node: int = 1, timeout_s: float = 900) -> dict[str, Any]:
    """Wall time of `cnnray train` vs `cnnray submit train` (2-node local cluster), `rounds` of each, alternating."""
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-cluster-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update(CNNRAY_CLUSTER_DIR=str(root / "state"), PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        _run(["cluster", "up", "--nodes", str(nodes), "--cpus-per-node", str(cpus_per_node)], env, root, 300)
        up_s = time.perf_counter() - t0
        direct, submitted, job_s = [], [], []
        try:
            for i in range(rounds):
                common = BENCH_TRAIN + [f"tracking.uri=sqlite:///{root}/mlflow.db", f"scaling.storage_path={root}/ckpt"]
                wall, _ = _run(["train", *common, f"run.name=direct-{i}"], env, root, timeout_s)
                direct.append(wall)
                wall, out = _run(["submit", "train", *common, f"run.name=submitted-{i}", "--json"], env, root, timeout_s)
                submitted.append(wall)
                job_s.append(json.loads(out.strip().splitlines()[-1])["wall_seconds"])
        finally:
            t1 = time.perf_counter()
            _run(["cluster", "down"], env, root, 180)
            down_s = time.perf_counter() - t1
    d, s = median(direct), median(submitted)
    return {"rounds": rounds, "nodes": nodes, "cpus_per_node": cpus_per_node, "direct_s": [round(x, 1) for x in direct],
            "submitted_s": [round(x, 1) for x in submitted], "direct_median_s": round(d, 1),
            "submitted_median_s": round(s, 1), "ratio": round(s / d, 3), "cluster_up_s": round(up_s, 1),
            "cluster_down_s": round(down_s, 1), "config": BENCH_TRAIN}


def format_cluster_bench(r: dict[str, Any]) -> str:
    """Both wall times and their ratio (the cost of submitting instead of training in-process)."""
    return "\n".join([
        f"same training (2 epochs, 2 DDP workers), {r['rounds']} round(s), whole-process wall time:",
        f"cnnray train (own local Ray)            {r['direct_median_s']:.1f}s   {r['direct_s']}",
        f"cnnray submit train ({r['nodes']}-node local cluster)  {r['submitted_median_s']:.1f}s   {r['submitted_s']}",
        f"submitted / direct: x{r['ratio']:.2f}   (cluster up {r['cluster_up_s']:.0f}s and down "
        f"{r['cluster_down_s']:.0f}s, once, not included)",
    ])
