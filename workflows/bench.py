"""`cnnray bench [data|train|tune|predict|cluster|compress|promote|transfer|all]`: benchmarks that print ratios measured in one command."""

from __future__ import annotations

import importlib
import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.errors import UserInputError

# name -> (module, run function, format function)
BENCHES = {
    "data": ("cnnray.bench.data", "run_data_bench", "format_data_bench"),
    "train": ("cnnray.bench.train", "run_train_bench", "format_train_bench"),
    "tune": ("cnnray.bench.tune", "run_tune_bench", "format_tune_bench"),
    "predict": ("cnnray.bench.predict", "run_predict_bench", "format_predict_bench"),
    "cluster": ("cnnray.bench.cluster", "run_cluster_bench", "format_cluster_bench"),
    "compress": ("cnnray.bench.compress", "run_compress_bench", "format_compress_bench"),
    "promote": ("cnnray.bench.promote", "run_promote_bench", "format_promote_bench"),
    "transfer": ("cnnray.bench.transfer", "run_transfer_bench", "format_transfer_bench"),
}


def _gpu_bench(which: str, quick: bool, as_json: bool) -> int:
    import torch

    if which != "train":
        raise UserInputError(f"--gpu applies to `cnnray bench train`, not `{which}`")
    if not torch.cuda.is_available():
        raise UserInputError("cnnray bench train --gpu: no CUDA GPU is visible to PyTorch")
    from cnnray.bench.gpu import format_gpu_bench, run_gpu_bench

    print("== bench train --gpu", flush=True)
    result = run_gpu_bench(quick=quick)
    print(format_gpu_bench(result), flush=True)
    if as_json:
        print_json({"train_gpu": result})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmark(s) and print their ratios (JSON with --json)."""
    parser = make_parser("cnnray bench", "Benchmarks; each prints ratios measured in the same run.", config=False)
    parser.add_argument("which", nargs="?", default="all", choices=[*BENCHES, "all"])
    parser.add_argument("--quick", action="store_true", help="train: skip the time-to-accuracy race; compress: a "
                        "small model trained 2 epochs, 1-epoch fine-tunes; promote: 200 replications per row; transfer: a narrow "
                        "model, 2-3 epochs (a smoke run)")
    parser.add_argument("--gpu", action="store_true",
                        help="train: the CUDA GPU table instead (Engine vs a lean loop, CBAM cost; needs no Ray)")
    parser.add_argument("--overhead", type=int, metavar="N", default=None,
                        help="tune: per-trial overhead of N one-epoch trials, in the trial's actor and as Train runs")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.gpu:
            return _gpu_bench(args.which, args.quick, args.json)
        if args.overhead is not None and (args.which != "tune" or args.overhead < 1):
            raise UserInputError(f"--overhead N (N >= 1 trials) applies to `cnnray bench tune`; got "
                                 f"`{args.which}` with N={args.overhead}")
        from cnnray.cluster.ray_session import quiet_ray

        quiet_ray(args.verbose)
        results = {}
        for name in BENCHES if args.which == "all" else [args.which]:
            module_name, run_name, fmt_name = BENCHES[name]
            module = importlib.import_module(module_name)
            kwargs = {"quick": True} if name in ("train", "compress", "promote", "transfer") and args.quick else {}
            if args.overhead is not None:  # the overhead bench instead of ASHA vs FIFO
                run_name, fmt_name, kwargs, name = "run_overhead_bench", "format_overhead_bench", {"n": args.overhead}, "tune_overhead"
            print(f"== bench {name}", flush=True)
            results[name] = getattr(module, run_name)(**kwargs)
            print(getattr(module, fmt_name)(results[name]), flush=True)
        if args.json:
            print_json(results)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
