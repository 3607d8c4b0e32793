"""`cnnray inspect --model URI [data.* keys] [--out DIR] [--what filters,featuremaps,attention,gradcam,all]
[--layers NAMES] [--images N] [--json]`: a registered version's first-layer filters against Gabor filters, feature
maps, CBAM attention and Grad-CAM as PNGs + summary.json in --out, each also an artifact (insight/) of its run."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.insight.inspect_command import InspectOptions, run_inspect


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
        opts = InspectOptions(args.model, tuple(args.overrides), out=args.out, what=args.what, layers=args.layers,
                              images=args.images)
        opts.validate()
        summary = run_inspect(opts)
        if args.json:
            print_json(summary)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
