"""`cnnray jobs list|status|logs|stop [ID]`: the Ray jobs of a cluster (the local one, --address or RAY_ADDRESS)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow
from cnnray.errors import UserInputError

ACTIONS = ("list", "status", "logs", "stop")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def main(argv: list[str] | None = None) -> int:
    """List jobs; show one job's status and where its actors ran; print or follow its log; stop it."""
    parser = make_parser("cnnray jobs", "Ray jobs on a cluster: list, status, logs, stop.", config=False)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("job_id", nargs="?", default=None, help="submission id (raysubmit_...) for status, logs, stop")
    parser.add_argument("--address", default=None, help="job API URL (default: RAY_ADDRESS or the local cluster)")
    parser.add_argument("--follow", action="store_true", help="logs: follow until the job ends")
    parser.add_argument("--tail", type=int, default=None, help="logs: only the last N lines")
    parser.add_argument("--no-wait", action="store_true", help="stop: do not wait for the job to end")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.action != "list" and not args.job_id:
            raise UserInputError(f"cnnray jobs {args.action}: give the job id (see `cnnray jobs list`)")
        from cnnray.jobs import client as jc
        from cnnray.jobs import submit as js

        target = jc.prepare(args.address)
        client = jc.job_client(target)
        js.quiet_sdk_logs()
        if args.action == "list":
            jobs = [j for j in client.list_jobs() if j.submission_id]
            jobs.sort(key=lambda j: j.start_time or 0)
            for j in jobs:
                print(f"{j.submission_id}  {str(j.status.value):<9} {_when(j.start_time)}  {j.entrypoint[:100]}")
            if not jobs:
                print("no jobs")
            if args.json:
                print_json({"jobs": [{"job_id": j.submission_id, "status": str(j.status.value), "entrypoint": j.entrypoint,
                                      "start_time": j.start_time, "end_time": j.end_time} for j in jobs]})
            return 0
        try:
            summary = js.job_summary(client, args.job_id)
        except RuntimeError as e:
            raise UserInputError(f"no job '{args.job_id}' at {target.url} ({str(e)[:200]})") from None
        if args.action == "status":
            from cnnray.jobs import placement

            actors = placement.job_actors(target, summary["ray_job_id"]) if summary["ray_job_id"] else []
            summary.update(placement=placement.placement(actors), train_worker_nodes=placement.worker_nodes(actors),
                           trial_actor_nodes=placement.worker_nodes(actors, placement.TRIAL_ACTOR))
            print(f"{args.job_id}  {summary['status']}  started {_when(summary['start_time'])}  ended "
                  f"{_when(summary['end_time'])}\n  {summary['entrypoint']}")
            if summary["message"]:
                print(f"  {summary['message'].strip()[:500]}")
            for node, classes in summary["placement"].items():
                print(f"  node {node[:12]}: " + ", ".join(f"{k} x{v}" for k, v in sorted(classes.items())))
            if args.json:
                print_json(summary)
            return 0
        if args.action == "logs":
            if args.follow:
                from collections import deque

                js.follow(client, args.job_id, lambda s: (sys.stdout.write(s), sys.stdout.flush()), deque(maxlen=1))
            else:
                text = client.get_job_logs(args.job_id)
                lines = text.splitlines()[-args.tail:] if args.tail else text.splitlines()
                print("\n".join(lines))
            return 0
        if summary["status"] in js.TERMINAL:
            print(f"job {args.job_id} already ended: {summary['status']}")
            return 0
        client.stop_job(args.job_id)
        status = "STOPPING" if args.no_wait else js.wait_terminal(client, args.job_id, timeout_s=60)
        print(f"job {args.job_id}: {status}")
        if args.json:
            print_json({"job_id": args.job_id, "status": status})
        return 0 if status in ("STOPPED", "STOPPING", "SUCCEEDED", "FAILED") else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
