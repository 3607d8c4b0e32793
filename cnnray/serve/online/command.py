"""`cnnray serve`, `serve status`, `serve stop`: start the app, report on it, end it.

Without --address the app runs on a local Ray cluster (127.0.0.1, ended by a watchdog if this process
dies) in the foreground, like `mlflow models serve`: SIGTERM, Ctrl-C or `cnnray serve stop` end it and
every Serve process with it. With --address it is deployed onto that cluster and outlives the command.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from cnnray.errors import UserInputError
from cnnray.serve.online import state
from cnnray.serve.online.loaded import load
from cnnray.serve.online.options import ServeOptions, replica_settings
from cnnray.tracking.model_store import resolve

READY_TIMEOUT_S = 300.0  # replicas download and smoke-test the version before the app answers
STOP_TIMEOUT_S = 60.0


def http_json(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; status 0 when nothing answered."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def run_serve(opt: ServeOptions, on_line: Callable[[str], None] = print,
              on_ready: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Check the version, start the app, wait until it answers; then serve until told to stop (local) or
    return (on a cluster). The result names the URL and the version served."""
    resolved = resolve(opt.model, opt.tracking_uri)  # a missing name, alias or version exits 2 here
    url = f"http://{_public_host(opt)}:{opt.port}"
    record = state.AppRecord(opt.name, url, opt.model, opt.tracking_uri, None if opt.address else os.getpid(),
                             opt.address, time.time())
    state.claim(record)  # a second `cnnray serve --name X` exits 2 here
    started = deployed = False
    try:
        # Fail fast here rather than in every replica: a version that cannot load or answer its example.
        on_line(f"checking {resolved.label} (download, load, smoke prediction)")
        load(resolved, opt.tracking_uri)
        started = _deploy(opt, on_line)
        deployed = True
        result = {"app": opt.name, "url": url, "model": opt.model, "version": resolved.version,
                  "label": resolved.label, "following": opt.model if opt.follows else None,
                  "replicas": opt.autoscale or opt.replicas, "address": opt.address}
        on_line(f"serving {resolved.label} at {url}/invocations"
                + (f" (following {opt.model}, checked every {opt.follow_interval:g} s)" if opt.follows else ""))
        if on_ready:
            on_ready(result)
        if opt.address is None:
            _serve_until_stopped(on_line)
        return result
    finally:
        # A local app ends with this process; a cluster's app outlives it, unless it never started.
        if opt.address is None or not deployed:
            state.remove(opt.name, record.pid)
        if opt.address is None and started:
            _shutdown()


def _public_host(opt: ServeOptions) -> str:
    """The host clients reach the app at: --host, or the cluster's head when it listens on every interface."""
    if opt.host in ("0.0.0.0", "::"):
        head = (opt.address or "").split("://")[-1].rsplit(":", 1)[0]
        return head or "127.0.0.1"
    return opt.host


def _deploy(opt: ServeOptions, on_line: Callable[[str], None]) -> bool:
    """Start (or join) Ray and Serve and run the app; True when this process started Ray."""
    from cnnray.cluster.ray_session import ensure_ray, quiet_ray

    quiet_ray(opt.verbose)
    # deferred (heavy import): ray, ray.serve
    import ray
    from ray import serve

    from cnnray.cluster.local_ray import start_local_ray
    from cnnray.serve.online.app import build_app

    if opt.address:
        started = ensure_ray(opt.address, opt.verbose)
    elif not ray.is_initialized():
        need = (opt.autoscale_range[1] if opt.autoscale_range else opt.replicas) * opt.cpus_per_replica
        start_local_ray(num_cpus=max(os.cpu_count() or 1, int(need + 0.999)), log_to_driver=opt.verbose,
                        logging_level=logging.INFO if opt.verbose else logging.ERROR, configure_logging=True)
        started = True
    else:
        started = False
    if not opt.verbose:
        logging.getLogger("ray.serve").setLevel(logging.ERROR)
    serve.start(http_options={"host": opt.host, "port": opt.port})
    app = build_app(replica_settings(opt), replicas=opt.replicas, autoscale=opt.autoscale_range,
                    cpus=opt.cpus_per_replica, gpus=opt.gpus_per_replica)
    on_line(f"starting {opt.autoscale or opt.replicas} replica(s) of app {opt.name!r}")
    try:
        serve.run(app, name=opt.name, route_prefix="/")
    except Exception as e:
        raise RuntimeError(f"app {opt.name!r} did not start: {type(e).__name__}: {e}") from None
    if opt.address:  # serve.run returned once the app is RUNNING; its proxy may not be reachable from here
        return started
    deadline = time.time() + READY_TIMEOUT_S
    while http_json(f"http://{opt.host}:{opt.port}/health", timeout=5)[0] != 200:
        if time.time() > deadline:
            raise RuntimeError(f"app {opt.name!r} did not answer GET /health within {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
    return started


def _serve_until_stopped(on_line: Callable[[str], None]) -> None:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    on_line("stopping: Serve and the local Ray cluster shut down")


def _shutdown() -> None:
    # deferred (heavy import): ray, ray.serve
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_status(name: str) -> dict[str, Any]:
    """The app's state as its replicas report it (UserInputError when no such app runs here)."""
    rec = _record(name)
    code, body = http_json(f"{rec.url}/status")
    if code != 200 or not isinstance(body, dict):
        return {"app": rec.name, "url": rec.url, "model": rec.model, "pid": rec.pid, "answering": False,
                "error": f"GET {rec.url}/status answered {code or 'nothing'}"}
    return {"app": rec.name, "url": rec.url, "pid": rec.pid, "answering": True, **body}


def serve_stop(name: str, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """End the app (and, locally, its process and Ray cluster); waits until they are gone."""
    rec = _record(name)
    if rec.pid is None:
        _delete_on_cluster(rec)
    else:
        os.kill(rec.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while state.alive(rec.pid) and time.time() < deadline:
            time.sleep(0.2)
        if state.alive(rec.pid):  # the watchdog of its local cluster ends the Ray processes it leaves
            os.kill(rec.pid, signal.SIGKILL)
    state.remove(rec.name)
    return {"app": rec.name, "stopped": True, "url": rec.url}


def _delete_on_cluster(rec: state.AppRecord) -> None:
    from cnnray.cluster.ray_session import ensure_ray, quiet_ray

    quiet_ray()
    # deferred (heavy import): ray.serve
    from ray import serve

    ensure_ray(rec.address)
    logging.getLogger("ray.serve").setLevel(logging.ERROR)  # its "Deleting app" line; the command says it
    serve.delete(rec.name)


def _record(name: str) -> state.AppRecord:
    rec = state.read(name)
    if rec is None:
        running = ", ".join(f"{r.name} ({r.url})" for r in state.running()) or "none"
        raise UserInputError(f"no app named {name!r} is served from this machine; running apps: {running}")
    return rec
