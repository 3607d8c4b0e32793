"""`cnnray promote [--name cnnray] [--candidate challenger|VERSION] [--metric accuracy] [--min-delta 0]
[--alpha 0.05] [--decisions 20] [--floor 0] [--split test] [data.* keys] [--dry-run] [--json]`: move `champion`
only on evidence from the held-out test split, spending that test set's false-promotion budget."""

from __future__ import annotations

import argparse
import sys

from cnnray.console import make_parser, run_workflow


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = make_parser("cnnray promote", "Promote a candidate version to @champion on paired evidence.", config=False)
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the candidate's training data), "
                                                     "tracking.uri, tracking.experiment")
    parser.add_argument("--name", default="cnnray", help="registered model name")
    parser.add_argument("--candidate", default="challenger", help="an alias or a version number")
    parser.add_argument("--metric", default="accuracy", help="accuracy, top5 or f1_macro")
    parser.add_argument("--min-delta", type=float, default=0.0, help="the interval's lower bound must exceed this")
    parser.add_argument("--alpha", type=float, default=None, help=(
        "family-wise chance of promoting a no-better candidate across all decisions on one test set (default "
        "0.05; fixed by the first decision on that test set)"))
    parser.add_argument("--decisions", type=int, default=None, help=(
        "decisions one test set's alpha is divided over (default 20; fixed by its first decision)"))
    parser.add_argument("--confidence", type=float, default=None, help=argparse.SUPPRESS)  # replaced by --alpha
    parser.add_argument("--floor", type=float, default=0.0, help="minimum absolute metric to become champion")
    parser.add_argument("--split", default="test", help="test (held out, the default); val or train need "
                                                        "--allow-selection-split")
    parser.add_argument("--allow-selection-split", action="store_true",
                        help="decide on val/train, which every version was selected on (tagged; spends nothing)")
    parser.add_argument("--allow-unverified-champion", action="store_true",
                        help="compare with a champion that records no test set (trained before test splits)")
    parser.add_argument("--resamples", type=int, default=10_000, help="paired bootstrap resamples")
    parser.add_argument("--dry-run", action="store_true", help="decide and print; change, record and spend nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Evaluate candidate and champion on the same held-out data; promote when the rule says so."""
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.promote.decision_output import print_decision
        from cnnray.promote.gate import PromoteOptions, run_promote
        from cnnray.serve.options import split_keys

        keys = split_keys(args.overrides)
        opt = PromoteOptions(keys.tracking_uri, args.name, args.candidate, args.metric, args.min_delta, args.floor,
                             keys.data, args.split, args.dry_run, keys.experiment, args.resamples, alpha=args.alpha,
                             decisions=args.decisions, allow_selection_split=args.allow_selection_split,
                             allow_unverified_champion=args.allow_unverified_champion, confidence=args.confidence)
        opt.validate()
        record = run_promote(opt, on_line=lambda s: print(s, flush=True))
        return print_decision(record, args.json)

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
