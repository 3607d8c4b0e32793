"""`cnnray compress --model URI --method fuse|quantize|prune|distill|export [--max-acc-drop 1] [--alias A]
[method options] [data.* keys] [train.*/optim.*/schedule.*/scaling.*/run.* keys: prune, distill] [model.* keys:
the student, distill] [--json]`: a smaller, faster or exported copy of a registered version, checked on the
source's evaluation images and registered as a new version of the same model only if it passes."""

from __future__ import annotations

import argparse
import sys

from cnnray.console import EXIT_FAILED, make_parser, print_json, run_workflow


def _parser() -> argparse.ArgumentParser:
    """The command's arguments and their help."""
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Compress, gate, measure, register; exit 1 (nothing registered) when the gate refuses."""
    parser = _parser()

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        # deferred: torch (cnnray.compress), after --help and argument errors
        from cnnray.compress.job.compress_command import CompressJobOptions, run_compress
        from cnnray.compress.job.runs import CompressTrainingFailed

        opts = CompressJobOptions(
            model=args.model, method=args.method, overrides=tuple(args.overrides), max_acc_drop=args.max_acc_drop,
            tolerance=args.tolerance, alias=args.alias, threads=args.threads, repeats=args.repeats,
            amount=args.amount, criterion=args.criterion, unstructured=args.unstructured,
            temperature=args.temperature, alpha=args.alpha, calibration=args.calibration, onnx_int8=args.onnx_int8,
            qat=args.qat, compile=args.compile)
        opts.validate()
        try:
            result = run_compress(opts, on_line=print)
        except CompressTrainingFailed as e:  # the run says FAILED/KILLED in MLflow; nothing registered
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        if args.json:
            print_json(result)
        return 0 if result["registered"] else EXIT_FAILED

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
