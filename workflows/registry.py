"""`cnnray registry [--name cnnray] [--json]`: versions with aliases, key metrics, lineage and last decision;
`--register CHECKPOINT_DIR` registers a training checkpoint (e.g. to replace a version of an older format)."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """List the versions of a registered model (or register a checkpoint)."""
    parser = make_parser("cnnray registry", "The versions of a registered model.", config=False)
    parser.add_argument("overrides", nargs="*", help="tracking.uri, tracking.experiment")
    parser.add_argument("--name", default="cnnray", help="registered model name")
    parser.add_argument("--register", default=None, metavar="CHECKPOINT_DIR",
                        help="register best_model.pt + config.yaml of a Ray Train checkpoint as a new version")
    parser.add_argument("--alias", default="challenger", help="with --register: the alias the new version gets")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.serve.options import split_keys

        keys = split_keys(args.overrides)
        if args.register:
            from cnnray.classifier.card import card_for_training
            from cnnray.tracking.reregister import register_checkpoint

            out = register_checkpoint(args.register, keys.tracking_uri, keys.experiment, args.name, args.alias,
                                      make_card=card_for_training)
            print(f"registered {args.name} version {out['version']} as @{args.alias} from {args.register}")
            if args.json:
                print_json(out)
            return 0
        from cnnray.serve.tables import budget_lines, registry_table
        from cnnray.tracking.listing import list_versions, test_set_budgets

        rows = list_versions(keys.tracking_uri, args.name)
        budgets = test_set_budgets(keys.tracking_uri, args.name, rows)
        print(f"registered model {args.name} at {keys.tracking_uri}: {len(rows)} version(s)")
        print(registry_table(rows) + "\n" + budget_lines(budgets), flush=True)
        if args.json:
            print_json({"name": args.name, "versions": rows, "test_set_budgets": budgets})
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
