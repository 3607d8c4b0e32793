"""`cnnray inspect --model URI [data.* keys] [--out DIR] [--what filters,featuremaps,attention,gradcam,all]
[--layers NAMES] [--images N] [--json]`: a registered version's first-layer filters against Gabor filters, feature
maps, CBAM attention and Grad-CAM as PNGs + summary.json in --out, each also an artifact (insight/) of its run."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Validate, load the version and its validation images, draw the figures, log them to the version's run."""
    parser = make_parser("cnnray inspect", "Look inside a registered version: filters, feature maps, CBAM "
                                           "attention, Grad-CAM; PNGs in --out and in the run's insight/ folder.",
                         config=False)
    parser.add_argument("--model", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the model's training data), tracking.uri")
    parser.add_argument("--out", default=None, help="output folder (default ./cnnray_inspect/NAME-vVERSION)")
    parser.add_argument("--what", default="all", help="comma-separated: filters, featuremaps, attention, gradcam, all")
    parser.add_argument("--layers", default=None, help="featuremaps: module names (default: stem conv, layer1, layer2)")
    parser.add_argument("--images", type=int, default=4, help="validation images to show (default 4)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.errors import UserInputError
        from cnnray.insight.inspect_options import parse_layers, parse_what
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        if ref.run_id:
            raise UserInputError(f"--model {args.model}: inspect takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS), whose run receives the figures")
        try:
            requested, attention_named = parse_what(args.what)
            layers = parse_layers(args.layers)
        except ValueError as e:
            raise UserInputError(str(e)) from None
        if args.images < 1:
            raise UserInputError(f"--images {args.images}: at least one image")
        if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
            raise UserInputError(f"--out {args.out!r} is an existing file, not a folder")
        keys = split_keys(args.overrides)
        from cnnray.insight.inspect_version import inspect_version

        summary = inspect_version(ref, keys.tracking_uri, keys.data, Path(args.out) if args.out else None, requested,
                                  attention_named, layers, args.images)
        print(f"wrote {len(summary['artifacts'])} files to {summary['out']}; logged to run {summary['run_id']} "
              "under insight/")
        if args.json:
            print_json(summary)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
