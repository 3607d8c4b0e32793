"""`cnnray submit WORKFLOW [workflow args]` from its options: check the workflow's input here (exit 2 before
anything is submitted), submit it through Ray's Jobs SDK, follow its log; the exit code is the job's outcome."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cnnray.errors import UserInputError
from cnnray.jobs import client as jc
from cnnray.jobs import submit as js
from cnnray.jobs.validate import check_submission, tracking_uri, workflow_module
from cnnray.jobs.job_command import write_stdout

# submit's own flags; everything else belongs to the workflow. (name -> takes a value)
OWN_FLAGS = {"--address": True, "--no-wait": False, "--json": False, "--env": True, "--on-interrupt": True,
             "--submission-id": True}
ON_INTERRUPT = ("ask", "stop", "detach")


def split_args(argv: list[str]) -> tuple[dict[str, list[str]], str | None, list[str]]:
    """(submit's flags, workflow name, the workflow's arguments) from the command line."""
    own: dict[str, list[str]] = {}
    workflow, rest, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if name in OWN_FLAGS:
            if OWN_FLAGS[name]:
                if not eq:
                    if i + 1 >= len(argv):
                        raise UserInputError(f"cnnray submit: {name} needs a value")
                    value, i = argv[i + 1], i + 1
                own.setdefault(name, []).append(value)
            else:
                own.setdefault(name, []).append("1")
        elif workflow is None and not a.startswith("-"):
            workflow = a
        else:
            rest.append(a)
        i += 1
    return own, workflow, rest


@dataclass(frozen=True)
class SubmitOptions:
    """The options of `cnnray submit` (the last of a repeated flag wins); `validate()` before `run_submit`."""

    workflow: str | None
    args: tuple[str, ...] = ()  # the workflow's own arguments
    address: str | None = None
    no_wait: bool = False
    want_json: bool = False  # --json: the job's workflow prints its result, then submit prints its own
    env: tuple[str, ...] = ()  # --env NAME (this process's value) or NAME=VALUE, for the job
    on_interrupt: str = "ask"
    submission_id: str | None = None

    @classmethod
    def from_argv(cls, argv: list[str]) -> SubmitOptions:
        """The options of a command line (`split_args`): submit's flags, the workflow and its arguments."""
        own, workflow, rest = split_args(argv)
        return cls(workflow, tuple(rest), address=(own.get("--address") or [None])[-1], no_wait="--no-wait" in own,
                   want_json="--json" in own, env=tuple(own.get("--env", [])),
                   on_interrupt=(own.get("--on-interrupt") or ["ask"])[-1],
                   submission_id=(own.get("--submission-id") or [None])[-1])

    @cached_property
    def extra_env(self) -> dict[str, str]:
        """The --env variables; UserInputError for a malformed one."""
        return js.parse_env(list(self.env))

    def validate(self) -> None:
        """UserInputError (exit 2) for bad input, before the network is touched."""
        if self.workflow is None:
            raise UserInputError("cnnray submit: name the workflow to run, e.g. "
                                 "`cnnray submit train scaling.num_workers=2`")
        if self.on_interrupt not in ON_INTERRUPT:
            raise UserInputError(f"--on-interrupt {self.on_interrupt}: allowed values: ask, stop, detach")
        workflow_module(self.workflow)  # an unknown workflow: exit 2 before touching the network
        _ = self.extra_env


def _follow(client: Any, job_id: str, opts: SubmitOptions, result: dict[str, Any],
            lines: deque) -> dict[str, Any] | None:
    """Stream the log to the end; on Ctrl-C stop the job or detach (the --json object then, else None)."""
    try:
        js.follow(client, job_id, write_stdout, lines)
        js.wait_terminal(client, job_id)
    except KeyboardInterrupt:
        choice = js.ask_on_interrupt(job_id, opts.on_interrupt)
        if choice == "detach":
            print(f"detached: job {job_id} keeps running; `cnnray jobs logs {job_id} --follow` to follow, "
                  f"`cnnray jobs stop {job_id}` to stop", file=sys.stderr)
            return {**result, "status": "DETACHED"}
        print(f"stopping job {job_id} ...", file=sys.stderr, flush=True)
        js.stop_and_wait(client, job_id)
    return None


def run_submit(opts: SubmitOptions) -> tuple[int, dict[str, Any]]:
    """Check the workflow's input, submit, follow; (exit code, the --json object). Notes and the job's fate
    go to stderr, its log to stdout."""
    target = jc.prepare(opts.address)  # unreachable / refused: exit 2 in seconds
    checked = check_submission(opts.workflow, list(opts.args), os.environ.get("MLFLOW_TRACKING_URI"))
    for note in checked.notes if not target.local else []:
        print(f"note: {note}", file=sys.stderr)
    env = js.job_env(opts.extra_env, tracking_uri(None, os.environ.get("MLFLOW_TRACKING_URI")))
    client = jc.job_client(target)
    if "--verbose" not in opts.args:
        js.quiet_sdk_logs()
    t0 = time.time()
    job_id, entrypoint = js.submit(client, checked, env, opts.want_json, opts.submission_id)
    print(f"submitted {opts.workflow} as job {job_id} to {target.url}" +
          (f" (run {checked.run_name})" if checked.run_name else ""), file=sys.stderr, flush=True)
    result = {"job_id": job_id, "address": target.url, "workflow": opts.workflow, "entrypoint": entrypoint,
              "run_name": checked.run_name}
    if opts.no_wait:
        print(f"not waiting: follow with `cnnray jobs logs {job_id} --follow`, stop with `cnnray jobs stop {job_id}`",
              file=sys.stderr)
        return 0, {**result, "status": "SUBMITTED"}
    lines: deque = deque(maxlen=2000)
    detached = _follow(client, job_id, opts, result, lines)
    if detached is not None:
        return 0, detached
    summary = js.job_summary(client, job_id)
    code = js.exit_code(summary)
    print(f"job {job_id} {summary['status']} in {time.time() - t0:.0f}s", file=sys.stderr)
    if code != 0:
        print(f"{summary['message'] or ''}".strip()[-2000:] or "(no message)", file=sys.stderr)
        print(f"--- last {js.LOG_TAIL_LINES} log lines of {job_id} ---\n{js.log_tail(client, job_id)}", file=sys.stderr)
    return code, {**result, "status": summary["status"], "driver_exit_code": summary["driver_exit_code"],
                  "ray_job_id": summary["ray_job_id"], "wall_seconds": round(time.time() - t0, 1),
                  "result": js.last_json(list(lines)) if summary["status"] == "SUCCEEDED" else None}
