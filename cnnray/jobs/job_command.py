"""`cnnray jobs list|status|logs|stop [ID]` from its options: the Ray jobs of a cluster through the Jobs SDK."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cnnray.console import EXIT_FAILED
from cnnray.errors import UserInputError
from cnnray.jobs import client as jc
from cnnray.jobs import placement
from cnnray.jobs import submit as js

ACTIONS = ("list", "status", "logs", "stop")
STOPPED_OK = ("STOPPED", "STOPPING", "SUCCEEDED", "FAILED")  # `stop` exits 0: the job is no longer running


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@dataclass(frozen=True)
class JobsOptions:
    """The options of `cnnray jobs` as given; `validate()` before `run_jobs`."""

    action: str
    job_id: str | None = None
    address: str | None = None  # job API URL (default: RAY_ADDRESS or the local cluster)
    follow: bool = False  # logs: until the job ends
    tail: int | None = None  # logs: only the last N lines
    no_wait: bool = False  # stop: do not wait for the job to end

    def validate(self) -> None:
        """UserInputError (exit 2) for a missing job id, before the cluster is contacted."""
        if self.action not in ACTIONS:
            raise UserInputError(f"cnnray jobs {self.action}: choose one of {', '.join(ACTIONS)}")
        if self.action != "list" and not self.job_id:
            raise UserInputError(f"cnnray jobs {self.action}: give the job id (see `cnnray jobs list`)")


def write_stdout(text: str) -> None:
    """Write a piece of a followed log to stdout at once (it is read as it arrives)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _list(client: Any) -> dict[str, Any]:
    jobs = [j for j in client.list_jobs() if j.submission_id]
    jobs.sort(key=lambda j: j.start_time or 0)
    for j in jobs:
        print(f"{j.submission_id}  {str(j.status.value):<9} {_when(j.start_time)}  {j.entrypoint[:100]}")
    if not jobs:
        print("no jobs")
    return {"jobs": [{"job_id": j.submission_id, "status": str(j.status.value), "entrypoint": j.entrypoint,
                      "start_time": j.start_time, "end_time": j.end_time} for j in jobs]}


def _status(target: Any, job_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    actors = placement.job_actors(target, summary["ray_job_id"]) if summary["ray_job_id"] else []
    summary.update(placement=placement.placement(actors), train_worker_nodes=placement.worker_nodes(actors),
                   trial_actor_nodes=placement.worker_nodes(actors, placement.TRIAL_ACTOR))
    print(f"{job_id}  {summary['status']}  started {_when(summary['start_time'])}  ended "
          f"{_when(summary['end_time'])}\n  {summary['entrypoint']}")
    if summary["message"]:
        print(f"  {summary['message'].strip()[:500]}")
    for node, classes in summary["placement"].items():
        print(f"  node {node[:12]}: " + ", ".join(f"{k} x{v}" for k, v in sorted(classes.items())))
    return summary


def _logs(client: Any, opts: JobsOptions, write: Callable[[str], None]) -> None:
    if opts.follow:
        js.follow(client, opts.job_id, write, deque(maxlen=1))
    else:
        text = client.get_job_logs(opts.job_id)
        lines = text.splitlines()[-opts.tail:] if opts.tail else text.splitlines()
        print("\n".join(lines))


def run_jobs(opts: JobsOptions, write: Callable[[str], None] = write_stdout) -> tuple[int, dict[str, Any] | None]:
    """Do the action, printing what it shows; (exit code, the --json object or None where the action has none).
    `write` receives a followed log as it arrives."""
    target = jc.prepare(opts.address)
    client = jc.job_client(target)
    js.quiet_sdk_logs()
    if opts.action == "list":
        return 0, _list(client)
    try:
        summary = js.job_summary(client, opts.job_id)
    except RuntimeError as e:
        raise UserInputError(f"no job '{opts.job_id}' at {target.url} ({str(e)[:200]})") from None
    if opts.action == "status":
        return 0, _status(target, opts.job_id, summary)
    if opts.action == "logs":
        _logs(client, opts, write)
        return 0, None
    if summary["status"] in js.TERMINAL:
        print(f"job {opts.job_id} already ended: {summary['status']}")
        return 0, None
    client.stop_job(opts.job_id)
    status = "STOPPING" if opts.no_wait else js.wait_terminal(client, opts.job_id, timeout_s=60)
    print(f"job {opts.job_id}: {status}")
    return (0 if status in STOPPED_OK else EXIT_FAILED), {"job_id": opts.job_id, "status": status}
