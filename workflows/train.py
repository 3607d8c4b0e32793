"""`cnnray train`: train a registered model with DDP (local processes, or Ray Train on a cluster), tracked in MLflow.

With no arguments it runs the embedded default: digits at 32x32, a small CBAM-ResNet, 2 workers.
"""

from __future__ import annotations

import sys

from cnnray.config import load_config
from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run training, print the summary (and the JSON result with --json)."""
    parser = make_parser("cnnray train", "Train a CNN with PyTorch DDP (local processes, or Ray Train with --address "
                         "or scaling.runner=ray), tracked in MLflow.")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local cluster)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        overrides = list(args.overrides) + ([f"run.address={args.address}"] if args.address else [])
        cfg = load_config(args.config, overrides)
        from cnnray.run.local_host import prepare_with_ranks

        # A local run's other ranks start now; data, model and run name are checked before Ray is imported.
        prep, ranks = prepare_with_ranks(cfg)
        from cnnray.cluster.ray_session import quiet_ray

        quiet_ray(args.verbose)
        from cnnray.run.outcome import format_train_summary
        from cnnray.run.training import run_training

        result = run_training(cfg, verbose=args.verbose, prepared=prep, prestarted=ranks)
        # A failure is one line on stderr (what scripts and `cnnray submit` show); a success goes to stdout.
        print(format_train_summary(result), flush=True, file=sys.stdout if result["status"] == "FINISHED" else sys.stderr)
        if args.json:
            print_json(result)
        return 0 if result["status"] == "FINISHED" else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
