"""`cnnray jobs list|status|logs|stop [ID]`: the Ray jobs of a cluster (the local one, --address or RAY_ADDRESS)."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.jobs.job_command import ACTIONS, JobsOptions, run_jobs


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
        opts = JobsOptions(args.action, args.job_id, args.address, follow=args.follow, tail=args.tail,
                           no_wait=args.no_wait)
        opts.validate()
        code, result = run_jobs(opts)
        if args.json and result is not None:
            print_json(result)
        return code

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
