"""`cnnray data prepare|describe`: write Parquet shards + manifest.json from a source, or describe a data set."""

from __future__ import annotations

import argparse
import sys

from cnnray.config import load_config
from cnnray.console import make_parser, print_json, run_workflow
from cnnray.data.codec import FORMATS
from cnnray.errors import UserInputError

ACTIONS = ("prepare", "describe")


def _parser() -> argparse.ArgumentParser:
    p = make_parser("cnnray data prepare|describe",
                    "Prepare Parquet shards from an image source, or describe the configured data.")
    p.add_argument("--source", help="data.source (prepare: imagefolder, digits, synthetic, cifar10, cifar100)")
    p.add_argument("--path", help="data.path: the source directory")
    p.add_argument("--out", help="output directory for shards and manifest.json (prepare)")
    p.add_argument("--shards", type=int, help="shards per split (default: one per 10,000 images)")
    p.add_argument("--format", choices=FORMATS, default="png", help="how images are stored (default png)")
    p.add_argument("--image-size", type=int, help="resize to S x S (default: keep each image's size)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert every image to 1 or 3 channels")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _body(argv: list[str] | None) -> int:
    from cnnray.data import describe_dataset
    from cnnray.data.prepare import prepare_dataset

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    action = argv.pop(0) if argv and not argv[0].startswith("-") else None
    if action not in ACTIONS:  # taken off first: make_parser's catch-all overrides would swallow it
        raise UserInputError(f"cnnray data: expected an action first, one of {', '.join(ACTIONS)}; got {action!r}")
    args = _parser().parse_args(argv)
    flags = {"data.source": args.source, "data.path": args.path, "data.channels": args.channels}
    overrides = [*args.overrides, *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    cfg = load_config(args.config or None, overrides)
    if action == "describe":
        result = dict(describe_dataset(cfg.data).__dict__)
        for k, v in result.items():
            print(f"{k}: {v}")
    else:
        if not args.out:
            raise UserInputError("cnnray data prepare: --out is required")
        if args.shards is not None and args.shards < 1:
            raise UserInputError(f"--shards must be >= 1, got {args.shards}")
        result = prepare_dataset(cfg.data, args.out, shards=args.shards, fmt=args.format,
                                 image_size=args.image_size, strict=args.strict, overwrite=args.overwrite,
                                 progress=not args.no_progress and not args.json)
        for s in result["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
        n = result["counts"]
        print(f"wrote {n['train']} train + {n['val']} val + {n.get('test', 0)} test (held out) images in "
              f"{result['shards']} shards to {result['out']} ({len(result['skipped'])} skipped)")
        print(f"fingerprint {result['fingerprint']}")
    if args.json:
        print_json(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: `cnnray data prepare ...` / `python -m workflows.data prepare ...`."""
    return run_workflow(lambda: _body(argv))


if __name__ == "__main__":
    sys.exit(main())
