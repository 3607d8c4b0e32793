"""`cnnray replay models:/NAME/VERSION|models:/NAME@ALIAS [key=value ...] [--address A] [--register] [--json]`:
rebuild a registered version's training from its lineage and judge the result: identical, equivalent or different."""

from __future__ import annotations

import sys

from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow
from cnnray.errors import UserInputError


def main(argv: list[str] | None = None) -> int:
    """Plan (exit 2 on bad input), train, compare; exit 1 when the replay is `different` or did not finish."""
    parser = make_parser("cnnray replay", "Rebuild a registered version's training and compare it with the original.",
                         config=False)
    parser.add_argument("model", help="models:/NAME/VERSION or models:/NAME@ALIAS (a runs:/ URI of a registered run)")
    parser.add_argument("overrides", nargs="*", help="scaling.*, run.name, tracking.uri, data.path (checked by "
                                                     "fingerprint): where the replay runs; nothing that trains differently")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--register", action="store_true", help="register the replay as a new version "
                                                                "(tagged cnnray.replay_of)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of the paired test behind `equivalent`")

    def body() -> int:
        given = sys.argv[1:] if argv is None else argv
        if not ({"-h", "--help"} & set(given) or [a for a in given if not a.startswith("-")]):
            raise UserInputError("cnnray replay: name the version to replay: models:/NAME/VERSION or models:/NAME@ALIAS")
        args = parser.parse_args(given)
        from cnnray.replay.options import ReplayOptions

        opts = ReplayOptions(args.model, tuple(args.overrides), args.address, args.register, args.alpha).validate()
        from cnnray.cluster.ray_session import quiet_ray
        from cnnray.replay.replay_command import run_replay

        quiet_ray(args.verbose)
        result = run_replay(opts, on_line=lambda s: print(s, flush=True), verbose=args.verbose)
        if result.get("verdict") is None:
            print(f"replay {result['status']}: {result.get('error')}", file=sys.stderr, flush=True)
        if args.json:
            print_json(result)
        return 0 if result.get("verdict") not in (None, "different") else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
