"""`cnnray compress --model URI --method fuse|quantize|prune|distill|export [--max-acc-drop 1] [--alias A]
[method options] [data.* keys] [train.*/optim.*/schedule.*/scaling.*/run.* keys: prune, distill] [model.* keys:
the student, distill] [--json]`: a smaller, faster or exported copy of a registered version, checked on the
source's evaluation images and registered as a new version of the same model only if it passes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow


def _check_options(args: Any) -> None:
    """Ranges of the numeric options, checked before any work (ValueError naming the option)."""
    if args.max_acc_drop < 0 or args.tolerance < 0 or args.threads < 1 or args.repeats < 1:
        raise ValueError("--max-acc-drop and --tolerance must be >= 0, --threads and --repeats >= 1")
    if not 0 < args.amount < 1:
        raise ValueError(f"--amount {args.amount:g}: the fraction of channels removed must be in (0, 1)")
    if args.criterion not in ("l1", "bn_gamma"):
        raise ValueError(f"--criterion {args.criterion!r}: choose l1 or bn_gamma")
    if args.temperature <= 0 or not 0 <= args.alpha <= 1:
        raise ValueError(f"--temperature must be > 0 (got {args.temperature:g}) and --alpha in [0, 1] "
                         f"(got {args.alpha:g})")
    if args.calibration < 1:
        raise ValueError(f"--calibration {args.calibration}: at least one image")


def main(argv: list[str] | None = None) -> int:
    """Compress, gate, measure, register; exit 1 (nothing registered) when the gate refuses."""
    parser = make_parser("cnnray compress", "Compress or export a registered version; register it if it passes "
                                            "the output and accuracy gate.", config=False)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--method", required=True, help="fuse (Conv-BN folding), quantize (int8), prune (structured "
                        "channels + fine-tune), distill (train a smaller student), export (TorchScript + ONNX)")
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the data the model was trained on), "
                        "tracking.uri, tracking.experiment; prune/distill: train.*, optim.*, schedule.*, scaling.*, "
                        "run.* keys of the training run; distill: model.* keys of the student (default: the "
                        "teacher's architecture at half its width)")
    parser.add_argument("--max-acc-drop", type=float, default=1.0, help="accuracy points the result may lose")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference| for fuse/export")
    parser.add_argument("--alias", default=None, help="alias for the new version (default: none)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the latency measurement")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per latency figure (median reported)")
    parser.add_argument("--amount", type=float, default=0.5, help="prune: fraction of channels removed, in (0, 1)")
    parser.add_argument("--criterion", default="l1", help="prune: l1 (filter L1 norm) or bn_gamma (|BN weight|)")
    parser.add_argument("--unstructured", action="store_true", help="prune: zero the smallest weights (reported as "
                        "sparsity; shapes, file size and dense speed unchanged) instead of removing channels")
    parser.add_argument("--temperature", type=float, default=4.0, help="distill: softmax temperature T (> 0)")
    parser.add_argument("--alpha", type=float, default=0.7, help="distill: weight of the KL x T^2 term, in [0, 1]")
    parser.add_argument("--calibration", type=int, default=512, help="quantize: training images to calibrate on")
    parser.add_argument("--onnx-int8", action="store_true", help="quantize: also ONNX Runtime's int8 model, attached")
    parser.add_argument("--qat", action="store_true", help="quantize: quantization-aware fine-tune first (a training "
                        "run: train.*, optim.*, scaling.* keys apply; default 2 epochs at lr 1e-4)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="quantize: time the int8 network without torch.compile (its int8 kernels need it)")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.errors import UserInputError
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        if ref.run_id:
            raise UserInputError(f"--model {args.model}: compress takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS), so the result can be registered beside it")
        from cnnray.compress.methods import check_method
        from cnnray.train.compress_run import split_training_keys

        try:
            check_method(args.method)
            _check_options(args)
        except ValueError as e:
            raise UserInputError(str(e)) from None
        training, rest = split_training_keys(args.method, args.overrides)
        if training and ((args.method == "quantize" and not args.qat) or (args.method == "prune" and args.unstructured)):
            raise UserInputError(f"{training[0].split('=', 1)[0]}: no training run here (training keys go with prune, "
                                 "distill and quantize --qat; unstructured pruning is not fine-tuned)")
        keys = split_keys(rest)
        if training:  # bad keys and values exit 2 now, before the version is even loaded
            from cnnray.config import load_config

            load_config(overrides=[o for o in training if not o.startswith("model.")])
        from cnnray.train.compress_candidates import CompressOptions
        from cnnray.train.compress_job import compress_version

        opts = CompressOptions(amount=args.amount, criterion=args.criterion, temperature=args.temperature,
                               alpha=args.alpha, calibration=args.calibration, onnx_int8=args.onnx_int8,
                               compile=args.compile, qat=args.qat,
                               unstructured=args.unstructured, training=training)

        from cnnray.train.compress_run import CompressTrainingFailed

        with tempfile.TemporaryDirectory(prefix="cnnray-compress-") as tmp:
            try:
                result = compress_version(ref, keys, args.method, Path(tmp), max_acc_drop=args.max_acc_drop,
                                          tolerance=args.tolerance, alias=args.alias, threads=args.threads,
                                          repeats=args.repeats, opts=opts, on_line=print)
            except CompressTrainingFailed as e:  # the run says FAILED/KILLED in MLflow; nothing registered
                print(f"error: {e}", file=sys.stderr)
                return EXIT_FAILED
        if args.json:
            print_json(result)
        return 0 if result["registered"] else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
