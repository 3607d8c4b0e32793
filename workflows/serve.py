"""`cnnray serve --model models:/NAME@ALIAS [--replicas N | --autoscale MIN:MAX] [--gpus-per-replica G]
[--max-batch-size B --batch-wait-ms T] [--follow-interval S] [--port P] [--address ADDR] [--json]`: online
serving on Ray Serve that follows the alias; `cnnray serve status|stop [--name APP]`."""

from __future__ import annotations

import argparse
import sys

from cnnray.console import make_parser, print_json, run_workflow

ACTIONS = ("status", "stop")


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments (`status` / `stop` take --name and --json only)."""
    p = make_parser("cnnray serve", "Serve a registered model on Ray Serve; it follows the alias it was given.",
                    config=False)
    p.add_argument("overrides", nargs="*", help="tracking.uri=..., or the action: status | stop")
    p.add_argument("--model", default=None, help="models:/NAME@ALIAS (followed) or models:/NAME/VERSION")
    p.add_argument("--name", default="cnnray", help="the Serve app's name (default cnnray)")
    p.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (default 1)")
    p.add_argument("--autoscale", default=None, metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs each replica reserves (default 1)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs each replica reserves (default 0)")
    p.add_argument("--max-batch-size", type=int, default=32, help="requests per forward pass (default 32)")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="longest wait to fill a batch (default 2 ms)")
    p.add_argument("--max-images", type=int, default=256, help="images one request may hold (default 256)")
    p.add_argument("--follow-interval", type=float, default=10.0, help="seconds between alias checks (default 10)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--address", default=None, help="a Ray cluster to deploy onto (the app outlives the command)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve a version (foreground on the local cluster), or report on / stop a served app."""
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.serve.online.cli import describe_status, options_from_args, run_action

        action = args.overrides[0] if args.overrides and args.overrides[0] in ACTIONS else None
        if action:
            result = run_action(action, args.name)
            print(describe_status(result) if action == "status" else f"stopped app {args.name!r} ({result['url']})")
        else:
            opt = options_from_args(args)
            opt.validate()
            from cnnray.serve.online.command import run_serve

            result = run_serve(opt, on_line=lambda s: print(s, file=sys.stderr, flush=True),
                               on_ready=print_json if args.json else None)
        if args.json and action:
            print_json(result)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
