"""`cnnray promote [--name cnnray] [--candidate challenger|VERSION] [--metric accuracy] [--min-delta 0]
[--confidence 0.95] [--floor 0] [data.* keys] [--dry-run] [--json]`: move `champion` only on evidence."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Evaluate candidate and champion on the same frozen data; promote when the rule says so."""
    parser = make_parser("cnnray promote", "Promote a candidate version to @champion on paired evidence.", config=False)
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the candidate's training data), "
                                                     "tracking.uri, tracking.experiment")
    parser.add_argument("--name", default="cnnray", help="registered model name")
    parser.add_argument("--candidate", default="challenger", help="an alias or a version number")
    parser.add_argument("--metric", default="accuracy", help="accuracy, top5 or f1_macro")
    parser.add_argument("--min-delta", type=float, default=0.0, help="the interval's lower bound must exceed this")
    parser.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval confidence")
    parser.add_argument("--floor", type=float, default=0.0, help="minimum absolute metric to become champion")
    parser.add_argument("--split", default="val", choices=["val", "train", "test"])
    parser.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples")
    parser.add_argument("--dry-run", action="store_true", help="decide and print; change and record nothing")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.promote.decision_output import print_decision
        from cnnray.promote.gate import PromoteOptions, run_promote
        from cnnray.serve.options import split_keys

        keys = split_keys(args.overrides)
        opt = PromoteOptions(keys.tracking_uri, args.name, args.candidate, args.metric, args.min_delta,
                             args.confidence, args.floor, keys.data, args.split, args.dry_run, keys.experiment,
                             args.resamples)
        opt.validate()
        record = run_promote(opt, on_line=lambda s: print(s, flush=True))
        return print_decision(record, args.json)

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
