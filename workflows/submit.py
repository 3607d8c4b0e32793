"""`cnnray submit WORKFLOW [workflow args] [--address URL] [--no-wait] [--json]`: run a workflow as a Ray job.

The input is checked here first (exit 2 before anything is submitted). Then the job is submitted
through Ray's Jobs SDK, its log is streamed, and the command exits 0 when the job SUCCEEDED, 1 when
it FAILED or was STOPPED (with its status and the tail of its log), 2 when the workflow refused its
input on the cluster. `--no-wait` prints the job id and returns at once (follow with `cnnray jobs
logs ID --follow`). Ctrl-C while following asks whether to stop the job or detach from it (without
a terminal: stop; `--on-interrupt stop|detach` decides without asking); a detached job keeps running.
"""

from __future__ import annotations

import sys
import time
from collections import deque

from cnnray.console import EXIT_BAD_INPUT, print_json, run_workflow
from cnnray.errors import UserInputError

# submit's own flags; everything else belongs to the workflow. (name -> takes a value)
OWN_FLAGS = {"--address": True, "--no-wait": False, "--json": False, "--env": True, "--on-interrupt": True,
             "--submission-id": True}


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


def main(argv: list[str] | None = None) -> int:
    """Validate, submit, follow; the exit code is the job's outcome."""
    def body() -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        if not args or args[0] in ("-h", "--help"):
            print(__doc__.strip())
            return 0 if args else EXIT_BAD_INPUT
        own, workflow, rest = split_args(args)
        if workflow is None:
            raise UserInputError("cnnray submit: name the workflow to run, e.g. `cnnray submit train scaling.num_workers=2`")
        mode = (own.get("--on-interrupt") or ["ask"])[-1]
        if mode not in ("ask", "stop", "detach"):
            raise UserInputError(f"--on-interrupt {mode}: allowed values: ask, stop, detach")
        want_json = "--json" in own
        import os

        from cnnray.jobs import client as jc
        from cnnray.jobs import submit as js
        from cnnray.jobs import validate

        validate.workflow_module(workflow)  # an unknown workflow: exit 2 before touching the network
        extra_env = js.parse_env(own.get("--env", []))
        target = jc.prepare((own.get("--address") or [None])[-1])  # unreachable / refused: exit 2 in seconds
        checked = validate.check(workflow, rest, os.environ.get("MLFLOW_TRACKING_URI"))
        for note in checked.notes if not target.local else []:
            print(f"note: {note}", file=sys.stderr)
        env = js.job_env(extra_env, validate.tracking_uri(None, os.environ.get("MLFLOW_TRACKING_URI")))
        client = jc.job_client(target)
        if "--verbose" not in rest:
            js.quiet_sdk_logs()
        t0 = time.time()
        job_id, entrypoint = js.submit(client, checked, env, want_json, (own.get("--submission-id") or [None])[-1])
        print(f"submitted {workflow} as job {job_id} to {target.url}" +
              (f" (run {checked.run_name})" if checked.run_name else ""), file=sys.stderr, flush=True)
        result = {"job_id": job_id, "address": target.url, "workflow": workflow, "entrypoint": entrypoint,
                  "run_name": checked.run_name}
        if "--no-wait" in own:
            print(f"not waiting: follow with `cnnray jobs logs {job_id} --follow`, stop with `cnnray jobs stop {job_id}`",
                  file=sys.stderr)
            if want_json:
                print_json({**result, "status": "SUBMITTED"})
            return 0
        lines: deque = deque(maxlen=2000)
        try:
            js.follow(client, job_id, lambda s: (sys.stdout.write(s), sys.stdout.flush()), lines)
            js.wait_terminal(client, job_id)
        except KeyboardInterrupt:
            choice = js.ask_on_interrupt(job_id, mode)
            if choice == "detach":
                print(f"detached: job {job_id} keeps running; `cnnray jobs logs {job_id} --follow` to follow, "
                      f"`cnnray jobs stop {job_id}` to stop", file=sys.stderr)
                if want_json:
                    print_json({**result, "status": "DETACHED"})
                return 0
            print(f"stopping job {job_id} ...", file=sys.stderr, flush=True)
            js.stop_and_wait(client, job_id)
        summary = js.job_summary(client, job_id)
        code = js.exit_code(summary)
        print(f"job {job_id} {summary['status']} in {time.time() - t0:.0f}s", file=sys.stderr)
        if code != 0:
            print(f"{summary['message'] or ''}".strip()[-2000:] or "(no message)", file=sys.stderr)
            print(f"--- last {js.LOG_TAIL_LINES} log lines of {job_id} ---\n{js.log_tail(client, job_id)}", file=sys.stderr)
        if want_json:
            print_json({**result, "status": summary["status"], "driver_exit_code": summary["driver_exit_code"],
                        "ray_job_id": summary["ray_job_id"], "wall_seconds": round(time.time() - t0, 1),
                        "result": js.last_json(list(lines)) if summary["status"] == "SUCCEEDED" else None})
        return code

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
