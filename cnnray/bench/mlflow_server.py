"""Start a throwaway `mlflow server` on 127.0.0.1 for a benchmark, and stop it again."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may take it before the bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root: Path, port: int, backend_store_uri: str, artifact_root: Path, workers: int | None,
           timeout_s: float, proxy_artifacts: bool = False) -> tuple[subprocess.Popen | None, str]:
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = root / f"server-{port}.log"
    # Proxied: clients send artifacts through the server (mlflow-artifacts:/); else they write to the root.
    artifacts = "--artifacts-destination" if proxy_artifacts else "--default-artifact-root"
    cmd = [exe, "server", "--backend-store-uri", backend_store_uri, artifacts, str(artifact_root),
           "--host", "127.0.0.1", "--port", str(port)] + (["--workers", str(workers)] if workers else [])
    with open(log, "w") as out:
        # MLflow 3 starts a pool of GenAI job consumers by default (~8 processes) that no cnnray feature uses.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            if proc.poll() is None:  # healthy and ours, not another server that holds the port
                return proc, uri
        except OSError:
            if proc.poll() is not None:  # e.g. the port was taken between free_port() and the bind
                return None, f"port {port}: mlflow server exited: {log.read_text()[-2000:]}"
            time.sleep(0.3)
    stop_server(proc)
    return None, f"port {port}: not healthy in {timeout_s:.0f} s: {log.read_text()[-2000:]}"


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (its uvicorn workers go with it), kill it if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def start_server(root: str | Path, *, backend_store_uri: str | None = None, workers: int | None = None,
                 proxy_artifacts: bool = False, timeout_s: float = 90.0, tries: int = 3) -> tuple[subprocess.Popen, str]:
    """A running `mlflow server` (SQLite in `root/mlflow.db` unless `backend_store_uri`, artifacts in
    `root/artifacts`) and its URI; stop it with stop_server."""
    root = Path(root)
    store = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    errors = []
    for _ in range(tries):  # a new port each time: the picked one may be taken before the server binds it
        proc, uri = _start(root, free_port(), store, root / "artifacts", workers, timeout_s, proxy_artifacts)
        if proc is not None:
            return proc, uri
        errors.append(uri)
    raise RuntimeError(f"mlflow server did not start in {tries} tries:\n" + "\n".join(errors))


@contextlib.contextmanager
def mlflow_server(root: str | Path, *, backend_store_uri: str | None = None, workers: int | None = None,
                  timeout_s: float = 90.0, tries: int = 3) -> Iterator[str]:
    """start_server as a context: yields the URI, stops the server on the way out."""
    proc, uri = start_server(root, backend_store_uri=backend_store_uri, workers=workers, timeout_s=timeout_s,
                             tries=tries)
    try:
        yield uri
    finally:
        stop_server(proc)
