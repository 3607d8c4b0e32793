"""`cnnray bench tune --store-runs N`: is an MLflow store holding one search's N child runs still browsable?

One parent run and N child runs made the way `cnnray tune` makes them (`start_run` with the parent's id: the
flattened config as params, config.yaml as an artifact, then one batch of epoch metrics and FINISHED), on a
SQLite store used directly and on a real `mlflow server` over the same kind of store. Then the reads that
browsing the search makes: the first page of the parent's children (100, a page of the UI's runs table), all
of them page by page, the parent run itself, and, on the server, the HTTP requests the UI's parent run page
sends (cnnray.bench.mlflow_ui_requests).
Goal: the parent's children found in under 2 s, first page and all pages alike.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

from cnnray.bench.mlflow_server import mlflow_server
from cnnray.bench.mlflow_ui_requests import run_page_requests
from cnnray.config import load_config
from cnnray.tracking.model_store import client
from cnnray.tracking.runs import end_run, log_metrics, start_run

GOAL_S = 2.0
BACKENDS = ("sqlite", "server")
WhileUp = Callable[[str, dict[str, Any]], None]
# What a trial logs at its last epoch (the keys of cnnray.run's epoch metrics).
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_f1_macro", "lr", "epoch_s")


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of `repeats` calls, and the last call's result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return median(times), out


@contextlib.contextmanager
def _quiet_run_urls() -> Iterator[None]:
    """No "View run ... at" line per closed run (MLflow prints one for each run on a server: thousands here)."""
    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def populate_search(uri: str, runs: int, threads: int = 4, experiment: str = "store-bench",
                    name: str = "store-bench") -> tuple[str, str, float]:
    """One parent and `runs` finished child runs as a search makes them; (experiment id, parent id, children/s)."""
    cfg = load_config(overrides=[f"tracking.uri={uri}", f"tracking.experiment={experiment}", f"run.name={name}"])
    parent = start_run(cfg, name, uri=uri, resume=False, tags={"cnnray.kind": "tune", "cnnray.space": "default"})

    def child(i: int) -> None:
        trial_id = f"trial_{i:05d}"
        ctx = start_run(cfg, f"{name}/{trial_id}", uri=uri, resume=False, parent_run_id=parent.run_id,
                        tags={"cnnray.trial_id": trial_id, "cnnray.tune_run": name,
                              "cnnray.config_hash": f"{i:016x}", "cnnray.data_fingerprint": "bench"})
        log_metrics(ctx, {k: 1.0 / (i + j + 1) for j, k in enumerate(EPOCH_METRICS)}, step=7)
        end_run(ctx, "FINISHED")

    with _quiet_run_urls():
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(child, range(runs)))  # list(): a failed child raises here
        rate = runs / (time.perf_counter() - t0)
        end_run(parent, "FINISHED")
    return parent.experiment_id, parent.run_id, rate


def _all_children(c: Any, experiment_id: str, flt: str) -> int:
    """How many runs match `flt`, read in pages of 1000 (MLflow's page limit for search_runs is 50,000)."""
    n, token = 0, None
    while True:
        page = c.search_runs([experiment_id], filter_string=flt, max_results=1000, page_token=token)
        n += len(page)
        token = page.token
        if not token:
            return n


def _size(paths: list[Path]) -> tuple[int, int]:
    """(bytes, files) under `paths` (files or folders)."""
    files = [f for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def _bench_one(backend: str, runs: int, repeats: int, threads: int, workers: int | None,
               while_up: WhileUp | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cnnray-bench-store-{backend}-") as tmp:
        root = Path(tmp)
        db = root / "mlflow.db"
        with (mlflow_server(root, workers=workers) if backend == "server"
              else contextlib.nullcontext(f"sqlite:///{db}")) as uri:
            experiment_id, parent_id, rate = populate_search(uri, runs, threads)
            c = client(uri)
            flt = f"tags.mlflow.parentRunId = '{parent_id}'"
            first_s, first = _timed(lambda: c.search_runs([experiment_id], filter_string=flt, max_results=100),
                                    repeats)
            # Fewer repeats: each reads every child with its ~130 params (tens of seconds at 5,000 runs).
            all_s, count = _timed(lambda: _all_children(c, experiment_id, flt), min(repeats, 3))
            if count != runs:
                raise AssertionError(f"{backend}: paging the parent's children found {count} runs, not {runs}")
            get_s, parent = _timed(lambda: c.get_run(parent_id), repeats)
            r = {"backend": backend, "uri": uri if backend == "server" else "sqlite (MlflowClient, no server)",
                 "runs": runs, "create_runs_per_s": rate, "search_first_page_s": first_s,
                 "first_page_runs": len(first), "search_all_pages_s": all_s, "paged_count": count,
                 "get_parent_s": get_s, "parent_name": parent.info.run_name,
                 "experiment_id": experiment_id, "parent_run_id": parent_id}
            if backend == "server":
                r.update(run_page_requests(uri, experiment_id, parent_id, repeats))
            if while_up is not None:
                while_up(uri, r)
        # Stopped before measuring: the server's log and the database's journal are not part of the store.
        artifacts = root / ("artifacts" if backend == "server" else "mlruns")
        r["db_bytes"], _ = _size(sorted(root.glob("mlflow.db*")))
        r["artifact_bytes"], r["artifact_files"] = _size([artifacts])
    r["store_bytes"] = r["db_bytes"] + r["artifact_bytes"]
    r["bytes_per_run"] = r["store_bytes"] / (runs + 1)
    r["goal_met"] = r["search_first_page_s"] < GOAL_S and r["search_all_pages_s"] < GOAL_S
    return r


def run_store_bench(runs: int = 5000, backends: tuple[str, ...] = BACKENDS, repeats: int = 5, threads: int = 4,
                    workers: int | None = None, while_up: WhileUp | None = None) -> dict[str, Any]:
    """Create one search's `runs` child runs per backend and time the reads that browse them; figures per backend.

    `workers`: the server's uvicorn workers (None: MLflow's default). `while_up(uri, figures)` is called while
    each backend's store (and server) is still there: how a test opens the MLflow UI on the same runs.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; valid: {list(BACKENDS)}")
    results = {b: _bench_one(b, runs, repeats, threads, workers, while_up) for b in backends}
    return {"runs": runs, "repeats": repeats, "threads": threads, "goal_s": GOAL_S, "backends": results,
            "goal_met": all(r["goal_met"] for r in results.values())}


def format_store_bench(r: dict[str, Any]) -> str:
    """One aligned line per backend (creation rate, searches by parent, get_run, size, goal), then the UI's requests."""
    lines = [f"one search's {r['runs']} child runs; median of {r['repeats']} (all pages: of {min(r['repeats'], 3)}); "
             f"goal: the parent's children in < {r['goal_s']:g} s (first page of 100, and all in pages of 1000)"]
    for name, b in r["backends"].items():
        lines.append(
            f"{name:<7} create {b['create_runs_per_s']:6.1f} runs/s   first 100 {b['search_first_page_s']:6.3f} s   "
            f"all {b['paged_count']} {b['search_all_pages_s']:6.3f} s   get parent {b['get_parent_s'] * 1e3:6.1f} ms   "
            f"store {b['store_bytes'] / 2**20:6.1f} MiB ({b['bytes_per_run'] / 1024:4.1f} KiB/run)   "
            f"goal {'met' if b['goal_met'] else 'NOT met'}")
    for name, b in r["backends"].items():
        if "ui_html_s" in b:
            lines.append(
                f"{name:<7} UI run page requests: html {b['ui_html_s'] * 1e3:.0f} ms, GetRun (GraphQL) "
                f"{b['ui_get_run_s'] * 1e3:.0f} ms, child runs (10) {b['ui_child_runs_s'] * 1e3:.0f} ms, "
                f"experiment's newest 50 {b['ui_newest_50_s'] * 1e3:.0f} ms; children page of 100 over HTTP "
                f"{b['http_children_page_s'] * 1e3:.0f} ms")
    return "\n".join(lines)
