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

from cnnray.console import EXIT_BAD_INPUT, print_json, run_workflow
from cnnray.jobs.submit_command import SubmitOptions, run_submit, split_args

__all__ = ["main", "split_args"]  # split_args (now in cnnray.jobs.submit_command) is still imported from here


def main(argv: list[str] | None = None) -> int:
    """Validate, submit, follow; the exit code is the job's outcome."""
    def body() -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        if not args or args[0] in ("-h", "--help"):
            print(__doc__.strip())
            return 0 if args else EXIT_BAD_INPUT
        opts = SubmitOptions.from_argv(args)
        opts.validate()
        code, result = run_submit(opts)
        if opts.want_json:
            print_json(result)
        return code

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
