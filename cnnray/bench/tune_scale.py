"""`cnnray bench tune --scale N`: a search of N one-epoch trials of a tiny model on synthetic 8x8 images (FIFO,
2 at a time, MLflow on a SQLite store): does it stay steady as it grows?

Prints, over the first and the last 10% of trials: trials/min and the driver's RSS; at the end: the search
folder's size and checkpoint count against tune.keep_checkpoints_top_k + running trials, Tune's experiment
state (size, and the time to write it once), the MLflow store's size, per-trial overhead median and p95.
Goals: last-10% throughput >= 0.9x the first 10%; RSS growth <= 100 MB; checkpoints <= K + running;
overhead median <= 0.5 s.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnray.config import load_config
from cnnray.tracking.lineage import host_cpu

SCALE_CONFIG = ["data.source=synthetic", "data.image_size=8", "data.samples_per_class=20", "model.width=0.125",
                "train.batch_size=64", "tune.scheduler=fifo", "tune.max_epochs=1", "tune.max_concurrent_trials=2",
                "tune.trial_runner=actor", "tune.trial_workers=1", "registry.enabled=false"]
RSS_GOAL_MB = 100.0
THROUGHPUT_GOAL = 0.9
OVERHEAD_GOAL_S = 0.5


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """The driver's resident memory once a second, on a thread: (time, MB)."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True, name="cnnray-rss")

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), _rss_mb()))
            self._stop.wait(every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def median_between(self, t0: float, t1: float) -> float:
        inside = [mb for t, mb in self.samples if t0 <= t <= t1]
        if not inside:  # a window shorter than a sample: the nearest sample
            inside = [min(self.samples, key=lambda s: abs(s[0] - (t0 + t1) / 2))[1]]
        return statistics.median(inside)


def _end_times(search_dir: Path) -> list[float]:
    """Each trial's end (unix seconds), in order, from the search's appended trials.csv."""
    with open(search_dir / "trials.csv", newline="") as f:
        return sorted(datetime.fromisoformat(r["ended_at"]).timestamp() for r in csv.DictReader(f))


def window(ends: list[float], start: float, first: bool) -> tuple[float, float, int]:
    """(window start, window end, trials) for the first or the last 10% of trial ends."""
    k = max(2, len(ends) // 10)
    if first:
        return start, ends[k - 1], k
    return ends[-k - 1], ends[-1], k


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tune_state(search_dir: Path) -> dict[str, Any]:
    """Tune's experiment state and searcher state: bytes, and the median time to write the state once."""
    files = [p for p in search_dir.iterdir() if p.is_file() and (p.name.startswith("experiment_state")
                                                                  or "searcher" in p.name or "variant" in p.name)]
    state = max((p for p in files if p.name.startswith("experiment_state")), key=lambda p: p.stat().st_size,
                default=None)
    write_s = None
    if state is not None:
        data = json.loads(state.read_text())
        times = []
        for _ in range(3):
            t = time.perf_counter()
            (search_dir / ".bench_state.json").write_text(json.dumps(data))
            times.append(time.perf_counter() - t)
        (search_dir / ".bench_state.json").unlink()
        write_s = statistics.median(times)
    return {"files": {p.name: p.stat().st_size for p in files}, "bytes": sum(p.stat().st_size for p in files),
            "experiment_state_bytes": state.stat().st_size if state else 0, "write_s": write_s}


def run_scale_bench(n: int = 2000, keep: int = 5, tracking: bool = True) -> dict[str, Any]:
    """One FIFO search of `n` one-epoch trials with MLflow on (off with `tracking=False`, to tell the store's
    share of a figure from Tune's); the figures of the module docstring."""
    # deferred (heavy import): torch, ray
    from cnnray.tune.tuning import run_tune

    with tempfile.TemporaryDirectory(prefix="cnnray-bench-scale-") as tmp:
        root = Path(tmp)
        cfg = load_config(overrides=[*SCALE_CONFIG, f"tune.num_samples={n}", f"tune.keep_checkpoints_top_k={keep}",
                                     f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.enabled={tracking}",
                                     "run.name=scale",
                                     f"scaling.storage_path={root}/searches"])
        t0 = time.time()
        with RssSampler() as rss:
            r = run_tune(cfg, on_line=lambda s: None)
        if r["status"] != "FINISHED":
            raise RuntimeError(f"scale search {r['status']}: {r.get('error')}")
        search_dir = root / "searches" / "scale"
        ends = _end_times(search_dir)
        a0, a1, ka = window(ends, t0, first=True)
        b0, b1, kb = window(ends, t0, first=False)
        # The first window starts with Ray's and the search's start-up: measure from the first trial's end.
        first_rate = 60 * (ka - 1) / max(a1 - ends[0], 1e-9)
        last_rate = 60 * kb / max(b1 - b0, 1e-9)
        checkpoints = sorted(str(p.relative_to(search_dir)) for p in search_dir.rglob("checkpoint_*") if p.is_dir())
        store = root / "mlflow.db"
        out = {
            "trials": n, "keep_checkpoints_top_k": keep, "tracking": tracking, "concurrent": cfg.tune.max_concurrent_trials,
            "wall_seconds": r["wall_seconds"], "trials_ended": len(ends),
            "first_10pct_trials_per_min": round(first_rate, 1), "last_10pct_trials_per_min": round(last_rate, 1),
            "throughput_ratio": round(last_rate / max(first_rate, 1e-9), 3),
            "rss_first_mb": round(rss.median_between(a0, a1), 1), "rss_last_mb": round(rss.median_between(b0, b1), 1),
            "rss_peak_mb": round(max(mb for _, mb in rss.samples), 1),
            "search_folder_bytes": folder_size(search_dir), "checkpoints": len(checkpoints),
            "checkpoint_bytes": sum(folder_size(search_dir / c) for c in checkpoints),
            "tune_state": tune_state(search_dir),
            "mlflow_store_bytes": (store.stat().st_size if store.exists() else 0) + folder_size(root / "mlruns"),
            "overhead_median_s": r["trial_overhead"]["median_s"], "overhead_p95_s": r["trial_overhead"]["p95_s"],
            "cpu": f"{host_cpu()}, {os.cpu_count()} cores",
        }
    out["rss_growth_mb"] = round(out["rss_last_mb"] - out["rss_first_mb"], 1)
    out["goals"] = {"throughput": out["throughput_ratio"] >= THROUGHPUT_GOAL,
                    "rss": out["rss_growth_mb"] <= RSS_GOAL_MB,
                    "checkpoints": out["checkpoints"] <= keep + out["concurrent"],
                    "overhead": out["overhead_median_s"] <= OVERHEAD_GOAL_S}
    return out


def _mb(b: float) -> str:
    return f"{b / 2**20:.1f} MB"


def format_scale_bench(r: dict[str, Any]) -> str:
    """The table of the module docstring, with each goal met or not."""
    def ok(goal: str) -> str:
        return "met" if r["goals"][goal] else "NOT met"

    s = r["tune_state"]
    write = f"{1000 * s['write_s']:.0f} ms" if s["write_s"] is not None else "-"
    return "\n".join([
        f"{r['trials']} one-epoch trials, {r['concurrent']} at a time, FIFO, "
        f"{'MLflow on (SQLite)' if r.get('tracking', True) else 'MLflow off'}, "
        f"tune.keep_checkpoints_top_k={r['keep_checkpoints_top_k']}; {r['wall_seconds']:.0f}s; {r['cpu']}",
        f"throughput   first 10% {r['first_10pct_trials_per_min']:.1f} trials/min, last 10% "
        f"{r['last_10pct_trials_per_min']:.1f}: x{r['throughput_ratio']:.2f} (goal >= x{THROUGHPUT_GOAL}: "
        f"{ok('throughput')})",
        f"driver RSS   first 10% {r['rss_first_mb']:.0f} MB, last 10% {r['rss_last_mb']:.0f} MB: "
        f"{r['rss_growth_mb']:+.0f} MB (goal <= +{RSS_GOAL_MB:.0f} MB: {ok('rss')}); peak {r['rss_peak_mb']:.0f} MB",
        f"disk         search folder {_mb(r['search_folder_bytes'])}, {r['checkpoints']} checkpoints "
        f"({_mb(r['checkpoint_bytes'])}; goal <= K + running = {r['keep_checkpoints_top_k'] + r['concurrent']}: "
        f"{ok('checkpoints')})",
        f"Tune state   {_mb(s['bytes'])} (experiment_state {_mb(s['experiment_state_bytes'])}), one write {write}",
        f"MLflow store {_mb(r['mlflow_store_bytes'])} ({r['mlflow_store_bytes'] / max(r['trials'], 1) / 1024:.1f} "
        f"KB per trial)",
        f"overhead     per trial median {r['overhead_median_s']:.2f}s, p95 {r['overhead_p95_s']:.2f}s "
        f"(goal median <= {OVERHEAD_GOAL_S}s: {ok('overhead')})",
    ])
