"""`cnnray explore [--out DIR] [--what gabor,convolution,activations,all] [--repeats N] [--json]`: the CNN
tutorial's lessons (Gabor simple cells, convolution by hand, activations) as PNG figures, summary.json and a
README.md index in --out; no trained model, no downloads."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.errors import UserInputError


def _print(summary: dict) -> None:
    print(f"wrote {', '.join(summary['figures'].values())}, summary.json, README.md to {summary['out']}")
    if "gabor" in summary:
        g = summary["gabor"]
        print(f"gabor: preferred {g['preferred_deg']:.1f} deg, grating at {g['true_deg']:.1f} deg "
              f"(bank step {g['step_deg']:.1f})")
    if "convolution" in summary:
        c = summary["convolution"]
        print(f"convolution: max |reference - F.conv2d| = {c['max_abs_diff']:.2e}; F.conv2d {c['speed_ratio']:.1f}x "
              f"faster (median, batch {c['timing_batch']}, {c['threads']} thread)")
    if "activations" in summary:
        a = summary["activations"]
        for name, r in a["rows"].items():
            cuda = f", CUDA {r['cuda_elements_per_s'] / 1e9:.2f}" if "cuda_elements_per_s" in r else ""
            print(f"  {name:<11} zero grad {100 * r['zero_grad_fraction']:5.1f}%   "
                  f"CPU {r['cpu_elements_per_s'] / 1e9:.3f}{cuda} G elements/s")


def main(argv: list[str] | None = None) -> int:
    """Validate the options, run the chosen parts, print where the figures went (JSON summary with --json)."""
    parser = make_parser("cnnray explore", "The CNN tutorial's lessons on this machine, no model needed: figures, "
                                           "summary.json and README.md in --out.", config=False)
    parser.add_argument("--out", default="./cnnray_explore", help="output folder (default ./cnnray_explore)")
    parser.add_argument("--what", default="all", help="comma-separated: gabor, convolution, activations, all")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per speed figure (median reported)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.insight.explore import check_out_dir, explore, parse_parts

        try:
            parts = parse_parts(args.what)
            out = check_out_dir(args.out)
        except ValueError as e:
            raise UserInputError(str(e)) from None
        if args.repeats < 1:
            raise UserInputError(f"--repeats {args.repeats}: at least one timed call (>= 1)")
        summary = explore(out, parts, args.repeats)
        _print(summary)
        if args.json:
            print_json(summary)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
