"""`cnnray compress --model URI --method fuse|export [--max-acc-drop 1] [--tolerance 1e-3] [--alias A]
[--threads N] [data.* keys] [--json]`: a smaller or exported copy of a registered version, checked on the
source's evaluation images and registered as a new version of the same model only if it passes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Compress, gate, measure, register; exit 1 (nothing registered) when the gate refuses."""
    parser = make_parser("cnnray compress", "Compress or export a registered version; register it if it passes "
                                            "the output and accuracy gate.", config=False)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--method", required=True, help="fuse (Conv-BN folding) or export (TorchScript + ONNX)")
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the data the model was trained on), "
                                                     "tracking.uri, tracking.experiment")
    parser.add_argument("--max-acc-drop", type=float, default=1.0, help="accuracy points the result may lose")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference| for fuse/export")
    parser.add_argument("--alias", default=None, help="alias for the new version (default: none)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the latency measurement")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per latency figure (median reported)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.errors import UserInputError
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        if ref.run_id:
            raise UserInputError(f"--model {args.model}: compress takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS), so the result can be registered beside it")
        keys = split_keys(args.overrides)
        from cnnray.compress.methods import check_method

        try:
            check_method(args.method)
            if args.max_acc_drop < 0 or args.tolerance < 0 or args.threads < 1 or args.repeats < 1:
                raise ValueError("--max-acc-drop and --tolerance must be >= 0, --threads and --repeats >= 1")
        except ValueError as e:
            raise UserInputError(str(e)) from None
        from cnnray.tracking.compression import compress_version

        with tempfile.TemporaryDirectory(prefix="cnnray-compress-") as tmp:
            result = compress_version(ref, keys, args.method, Path(tmp), max_acc_drop=args.max_acc_drop,
                                      tolerance=args.tolerance, alias=args.alias, threads=args.threads,
                                      repeats=args.repeats, on_line=print)
        if args.json:
            print_json(result)
        return 0 if result["registered"] else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
