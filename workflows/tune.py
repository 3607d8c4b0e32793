"""`cnnray tune`: search hyperparameters with Ray Tune (each trial in its own actor, or a Ray Train run), tracked in MLflow.

With no arguments it runs a small ASHA search of the `default` space on the embedded default (digits).
"""

from __future__ import annotations

import sys

from cnnray.config import load_config
from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run or resume the search, print the summary (and the JSON result with --json)."""
    parser = make_parser("cnnray tune", "Search hyperparameters with Ray Tune; every trial tracked in MLflow.")
    parser.add_argument("--space", default=None, help="search space: a built-in name or a YAML file (tune.space)")
    parser.add_argument("--resume", metavar="NAME", default=None, help="continue the interrupted search NAME")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local cluster)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        overrides = list(args.overrides) + ([f"run.address={args.address}"] if args.address else [])
        if args.resume:
            overrides += [f"run.name={args.resume}", "tune.resume=true"]
        cfg = load_config(args.config, overrides)
        from cnnray.tune.tuning import resolve_search

        resolve_search(cfg, args.space)  # bad space or settings: exit 2 before Ray is imported
        from cnnray.cluster.ray_session import quiet_ray

        quiet_ray(args.verbose)
        from cnnray.tune.trial_tables import format_tune_summary
        from cnnray.tune.tuning import run_tune

        result = run_tune(cfg, space_ref=args.space, verbose=args.verbose)
        print(format_tune_summary(result), flush=True)
        if args.json:
            print_json({k: v for k, v in result.items() if k not in ("table", "cost_table")})
        return 0 if result["status"] == "FINISHED" else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
