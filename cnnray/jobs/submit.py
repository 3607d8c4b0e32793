"""`cnnray submit`: run a workflow as a Ray job through Ray's Jobs SDK, follow it, report how it ended.

The job runs `python -m workflows.<name> ARGS` with a runtime_env that ships this checkout's
`cnnray` and `workflows` packages (`py_modules`, so the cluster runs the code the submitter has),
a small working directory holding the `--config` files, and the MLflow URI and credentials as
environment variables. Checks happen locally first (`cnnray.jobs.validate`): bad input never reaches
the cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cnnray
import workflows
from cnnray.errors import UserInputError
from cnnray.jobs.validate import Checked

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# The submitter's MLflow settings the job needs (URI, credentials, TLS, artifact store endpoints).
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
                 "MLFLOW_REGISTRY_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_GCS_DEFAULT_TIMEOUT")
EXCLUDES = [".venv", "venv", ".git", "data", "mlruns", "mlartifacts", "ray_results", "__pycache__", "*.pyc",
            "mlflow.db", "*.egg-info"]
LOG_TAIL_LINES = 40


def quiet_sdk_logs() -> None:
    """Hide the Jobs SDK's INFO lines ("Uploading package ...", "WebSocket closed ...")."""
    for name in ["ray", *[n for n in logging.root.manager.loggerDict if n.startswith("ray.")]]:
        logging.getLogger(name).setLevel(logging.WARNING)


def package_dirs() -> list[str]:
    """The `cnnray` and `workflows` package folders of this checkout (what the job imports)."""
    return [str(Path(cnnray.__file__).parent), str(Path(workflows.__file__).parent)]


def job_env(extra: dict[str, str], tracking_uri: str | None) -> dict[str, str]:
    """Environment variables of the job: MLflow settings forwarded from here, then --env values."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update({"PYTHONUNBUFFERED": "1", "GIT_PYTHON_REFRESH": "quiet", **extra})
    return env


def build(checked: Checked, workdir: Path, env: dict[str, str], want_json: bool) -> tuple[str, dict[str, Any]]:
    """(entrypoint, runtime_env); the `--config` files are copied into workdir, which the job runs in."""
    args, i, n = [], 0, 0
    src = iter(checked.config_files)
    while i < len(checked.args):
        a = checked.args[i]
        if a == "--config" or a.startswith("--config="):
            name = f"config-{n}{next(src).suffix or '.yaml'}"
            n += 1
            args += ["--config", name]
            i += 1 if a.startswith("--config=") else 2
            continue
        args.append(a)
        i += 1
    for k, path in enumerate(checked.config_files):
        shutil.copy(path, workdir / f"config-{k}{path.suffix or '.yaml'}")
    if want_json and "--json" not in args:
        args.append("--json")
    (workdir / "SUBMITTED_BY_CNNRAY").write_text(f"cnnray submit {checked.workflow}\n")
    entrypoint = shlex.join(["python", "-m", checked.module, *args])
    runtime_env = {"working_dir": str(workdir), "py_modules": package_dirs(), "excludes": EXCLUDES, "env_vars": env}
    return entrypoint, runtime_env


def submit(client: Any, checked: Checked, env: dict[str, str], want_json: bool,
           submission_id: str | None = None) -> tuple[str, str]:
    """Submit; returns (job id, entrypoint). The working dir is uploaded during the call and removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="cnnray-submit-"))
    try:
        entrypoint, runtime_env = build(checked, workdir, env, want_json)
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id,
                                   metadata={"cnnray.workflow": checked.workflow, "cnnray.run_name": checked.run_name or ""})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return job_id, entrypoint


def follow(client: Any, job_id: str, write: Callable[[str], None], keep: deque) -> None:
    """Stream the job's log lines to `write` until the job ends (KeyboardInterrupt propagates)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)
            keep.extend(chunk.splitlines())

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - a dropped log stream is not the job's end: wait for its status instead
        pass


def wait_terminal(client: Any, job_id: str, timeout_s: float | None = None) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED (or the timeout passes); its status."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL or (deadline is not None and time.time() > deadline):
            return status
        time.sleep(0.5)


def last_json(lines: list[str]) -> dict[str, Any] | None:
    """The workflow's --json result: the last log line that is a JSON object."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def job_summary(client: Any, job_id: str) -> dict[str, Any]:
    """Status, message, exit code and times of a job."""
    info = client.get_job_info(job_id)
    return {"job_id": job_id, "status": str(info.status.value), "message": info.message,
            "driver_exit_code": info.driver_exit_code, "entrypoint": info.entrypoint,
            "start_time": info.start_time, "end_time": info.end_time, "ray_job_id": info.job_id,
            "metadata": info.metadata or {}}


def ask_on_interrupt(job_id: str, mode: str) -> str:
    """What Ctrl-C on a followed job does: 'stop' or 'detach' (asks when mode is 'ask' and stdin is a terminal)."""
    if mode != "ask":
        return mode
    if not sys.stdin.isatty():
        return "stop"
    # The question goes to stderr: stdout stays the job's log and, with --json, ends in the result line.
    sys.stderr.write(f"\nCtrl-C: [s]top job {job_id}, or [d]etach and leave it running? [s/D] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline().strip().lower()
    except KeyboardInterrupt:
        return "detach"
    return "stop" if answer.startswith("s") else "detach"


def stop_and_wait(client: Any, job_id: str, timeout_s: float = 60) -> str:
    """Ask Ray to stop the job and wait (bounded) for it to end; its status."""
    client.stop_job(job_id)
    return wait_terminal(client, job_id, timeout_s)


def log_tail(client: Any, job_id: str, n: int = LOG_TAIL_LINES) -> str:
    """The last n lines of the job's log."""
    try:
        return "\n".join(client.get_job_logs(job_id).splitlines()[-n:])
    except Exception:  # noqa: BLE001 - the tail is a courtesy on an already failed job
        return ""


def exit_code(summary: dict[str, Any]) -> int:
    """0 SUCCEEDED; 2 when the workflow itself refused its input (driver exit 2); else 1."""
    if summary["status"] == "SUCCEEDED":
        return 0
    return 2 if summary.get("driver_exit_code") == 2 else 1


def parse_env(values: list[str]) -> dict[str, str]:
    """--env NAME (forward this process's value) or NAME=VALUE."""
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not name.isidentifier():
            raise UserInputError(f"--env {v}: expected NAME or NAME=VALUE")
        if not sep:
            if name not in os.environ:
                raise UserInputError(f"--env {name}: not set in this environment")
            value = os.environ[name]
        out[name] = value
    return out
