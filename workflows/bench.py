"""`cnnray bench [data|train|tune|predict|cluster|compress|promote|transfer|serve|all]`: benchmarks that print ratios measured in one command."""

from __future__ import annotations

import importlib
import sys

from cnnray.bench.tune_variants import tune_variant
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
    "serve": ("cnnray.bench.serve", "run_serve_bench", "format_serve_bench"),
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


def _run_benches(which: str, quick: bool, variant: tuple | None) -> dict:
    """Run and print each named bench (or the tune variant a flag chose); their results by name."""
    results = {}
    for name in BENCHES if which == "all" else [which]:
        module_name, run_name, fmt_name = BENCHES[name]
        kwargs = {"quick": True} if name in ("train", "compress", "promote", "transfer") and quick else {}
        kwargs = {"seconds": 3.0, "warmup": 1.0} if name == "serve" and quick else kwargs
        if variant is not None:  # --overhead, --scale or --store-runs instead of ASHA vs FIFO
            name, module_name, run_name, fmt_name, kwargs = variant
        module = importlib.import_module(module_name)
        print(f"== bench {name}", flush=True)
        results[name] = getattr(module, run_name)(**kwargs)
        print(getattr(module, fmt_name)(results[name]), flush=True)
    return results


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
    parser.add_argument("--scale", type=int, metavar="N", nargs="?", const=2000, default=None,
                        help="tune: one search of N one-epoch trials (default 2000), MLflow on: throughput and driver "
                        "memory over the first and last 10%%, disk, Tune state, MLflow store, overhead")
    parser.add_argument("--store-runs", type=int, metavar="N", default=None,
                        help="tune: an MLflow store (SQLite, and an mlflow server) holding one parent with N child runs: "
                        "search by parent and the run page's requests, timed")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.gpu:
            return _gpu_bench(args.which, args.quick, args.json)
        variant = tune_variant(args.which, {"overhead": args.overhead, "scale": args.scale,
                                            "store_runs": args.store_runs})
        from cnnray.cluster.ray_session import quiet_ray

        quiet_ray(args.verbose)
        results = _run_benches(args.which, args.quick, variant)
        if args.json:
            print_json(results)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
