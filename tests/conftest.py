"""Shared fixtures: one real local Ray cluster per test session, a real MLflow server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

REPO = Path(__file__).resolve().parents[1]
import split_audit  # noqa: E402 - before any process starts, so that all of them inherit the audit file

SPLIT_AUDIT = split_audit.install(Path(tempfile.gettempdir()))

from cnnray.bench.mlflow_server import start_server, stop_server  # noqa: E402 - after the audit file is set


# A test that uses one of these starts real Ray, MLflow, a 3-node cluster, a live training or Chromium:
# `-m "not slow"` (the inner loop) leaves it out; CI runs everything.
SLOW_FIXTURES = {"ray_local", "mlflow_server", "cluster", "live_run", "browser", "quantized", "onnx_path", "explored",
                 "registry_server", "mlflow_server_pg", "pg_server", "pg_database"}
# The heaviest files first (seconds measured serially on 2 cores, 2026-12-02), so that pytest-xdist's
# `--dist loadfile` hands them out before the many short ones and both workers finish together.
HEAVY_FIRST = ["test_cluster_jobs.py", "test_tune_search.py", "test_integration_train.py", "test_replay.py",
               "test_safety.py", "test_bench.py", "test_train_local.py", "test_run_faults.py", "test_train_streaming.py",
               "test_compress_quantize_workflow.py", "test_report.py", "test_replay_compressed.py",
               "test_promote_gate.py", "test_compress_distill.py", "test_tune_space.py", "test_serve_online.py"]


def pytest_collection_modifyitems(config, items):
    """Mark the tests that start real servers or clusters `slow`; put the heaviest files first (stable)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda it: rank.get(Path(str(it.fspath)).name, len(rank)))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests use tiny tensors: one thread is fastest and avoids OpenMP spin-waits on a busy 2-core CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def split_audit_guard():
    """Fails a test during which training or search code read test images (see split_audit.py); a test that
    expects reads asks for this fixture and looks at `.lines()`."""
    SPLIT_AUDIT.mark()
    yield SPLIT_AUDIT
    leaks = SPLIT_AUDIT.leaks()
    if leaks:
        pytest.fail(f"test images read by selection code: {leaks}", pytrace=False)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster shared by every test that needs one (started once: it costs seconds)."""
    import ray

    from cnnray.cluster.local_ray import start_local_ray

    if not ray.is_initialized():
        # 4 logical CPUs on 2 cores: room for a 2-worker trainer plus its controller and data tasks.
        # Started the way `cnnray train` starts its own: on 127.0.0.1, ended by a watchdog if pytest dies.
        start_local_ray(num_cpus=4, log_to_driver=False, configure_logging=False,
                        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                    split_audit.AUDIT_ENV: str(SPLIT_AUDIT.path)}})
    yield ray
    ray.shutdown()


def _serve_mlflow(root: Path, backend_store_uri: str | None = None) -> tuple[subprocess.Popen, str]:
    """A started `mlflow server` on 127.0.0.1 (one worker, artifacts proxied through it) and its URI."""
    return start_server(root, backend_store_uri=backend_store_uri, workers=1, proxy_artifacts=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with a SQLite store; yields its tracking URI."""
    proc, uri = _serve_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield uri
    stop_server(proc)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL on 127.0.0.1 for this session (each xdist worker its own; tests/pg.py).

    Without the server binaries or psycopg2: fails in CI (env CI set), skips with the reason elsewhere.
    """
    import pg

    why = pg.missing_reason()
    if why:
        if _in_ci():
            pytest.fail(f"PostgreSQL-backed registry tests cannot run: {why}", pytrace=False)
        pytest.skip(f"PostgreSQL-backed registry tests skipped: {why}")
    server = pg.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_database(pg_server, request):
    """A fresh database on `pg_server` for this test module; yields its SQLAlchemy URI."""
    import re

    name = re.sub(r"[^a-z0-9_]", "_", f"m_{request.module.__name__.rsplit('.', 1)[-1].lower()}")[:50]
    yield pg_server.create_database(f"{name}_{os.getpid()}")


@pytest.fixture(scope="module")
def mlflow_server_pg(pg_database, tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with a PostgreSQL store (one per test module); yields its URI."""
    proc, uri = _serve_mlflow(tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=pg_database)
    yield uri
    stop_server(proc)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def registry_server(request):
    """The tracking URI of a real `mlflow server`, once per backend: SQLite (the session's `mlflow_server`)
    and PostgreSQL (`mlflow_server_pg`, what production registries run). Module scope: each backend's server
    starts once per module, and pytest runs a module's tests of one backend before the other's."""
    return request.getfixturevalue("mlflow_server" if request.param == "sqlite" else "mlflow_server_pg")


# Registry lifecycle tests (serve / promote / registry): one small digits model trained in this process.
LIFECYCLE_OVERRIDES = ["data.image_size=16", "model.name=resnet18", "model.width=0.125", "train.epochs=2",
                       "train.precision=fp32", "train.ema=false", "train.batch_size=64"]


@pytest.fixture(scope="session")
def digits_model():
    """A ResNet-18/8 trained 2 epochs on 16x16 digits with the cnnray loop (no Ray; a few seconds), ~89% val acc.

    Returns a namespace: cfg, info, weights, val_acc, and `degraded(k)`: the same weights with the classifier
    rows of classes 0..k-1 rotated, so those classes are predicted wrong (accuracy drops by about k/10).
    """
    import types

    import torch

    from cnnray.config import load_config
    from cnnray.data import MemoryLoader, build_transforms, describe_dataset, load_arrays
    from cnnray.models.from_config import build_model
    from cnnray.loop.engine import Engine

    cfg = load_config(overrides=LIFECYCLE_OVERRIDES)
    info = describe_dataset(cfg.data)
    tx, ty, vx, vy = load_arrays(cfg.data)
    train_tf, eval_tf = build_transforms(cfg.data, info)
    train = MemoryLoader(tx, ty, 64, rank=0, world_size=1, seed=0, shuffle=True, drop_last=True, device="cpu",
                         transform=train_tf)
    val = MemoryLoader(vx, vy, 128, rank=0, world_size=1, shuffle=False, drop_last=False, device="cpu",
                       transform=eval_tf)
    torch.manual_seed(0)
    engine = Engine(build_model(cfg, info.num_classes, info.channels), cfg, steps_per_epoch=len(train),
                    num_classes=info.num_classes, device="cpu")
    for epoch in range(cfg.train.epochs):
        train.set_epoch(epoch)
        engine.train_epoch(train)
        metrics = engine.validate_and_select(lambda: val)
    weights = engine.weights_state("raw")

    def degraded(k: int) -> dict:
        w = {n: t.clone() for n, t in weights.items()}
        order = list(range(1, k)) + [0] + list(range(k, info.num_classes)) if k > 1 else list(range(info.num_classes))
        w["fc.weight"], w["fc.bias"] = weights["fc.weight"][order].clone(), weights["fc.bias"][order].clone()
        return w

    return types.SimpleNamespace(cfg=cfg, info=info, weights=weights, val_acc=metrics["val_acc"], val_x=vx, val_y=vy,
                                 degraded=degraded)
