"""`cnnray models`: list the registered models with their parameter counts and FLOPs at an input size."""

from __future__ import annotations

import sys
from typing import Any

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.errors import UserInputError


def _table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(title)
    table = Table()
    for column in ("model", "params (M)", "GFLOPs"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['params'] / 1e6:.2f}", f"{r['flops'] / 1e9:.3f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """List models: `cnnray models [--input-size N] [--num-classes K] [--stem auto|imagenet|cifar] [--json]`."""
    parser = make_parser("cnnray models", "Registered models with parameter counts and FLOPs (2 per MAC).",
                         config=False)
    parser.add_argument("--input-size", type=int, default=32, help="square input side in pixels (default 32)")
    parser.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (default 3)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    parser.add_argument("--stem", choices=("auto", "imagenet", "cifar"), default="auto",
                        help="auto: cifar below 64 px, else imagenet")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.models import summarize_models  # torch import only after the arguments are good

        stem = args.stem if args.stem != "auto" else ("cifar" if args.input_size < 64 else "imagenet")
        try:
            rows = summarize_models(args.input_size, args.in_chans, num_classes=args.num_classes,
                                    stem=stem, width=args.width)
        except ValueError as e:  # bad sizes or widths, found while building: bad input, not a failure
            raise UserInputError(str(e)) from None
        _table(rows, f"{args.input_size}x{args.input_size}x{args.in_chans}, {args.num_classes} classes, "
                     f"{stem} stem, width {args.width:g}")
        if args.json:
            print_json({"models": rows, "input_size": args.input_size, "num_classes": args.num_classes,
                        "in_chans": args.in_chans, "stem": stem, "width": args.width,
                        "flops_unit": "FLOPs (2 per MAC)"})
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
