"""`cnnray cluster up|status|down`: a real multi-node Ray cluster on this machine (127.0.0.1, token auth on)."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.jobs.cluster_command import ACTIONS, ClusterOptions, run_cluster


def main(argv: list[str] | None = None) -> int:
    """Start, describe or stop the local cluster; `up` prints the address, dashboard and how to authenticate."""
    parser = make_parser("cnnray cluster", "A multi-node Ray cluster on this machine: head + N-1 worker nodes, "
                         "each a `ray start` on 127.0.0.1, token authentication on.", config=False)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--nodes", type=int, default=2, help="up: nodes in all, head included (default 2)")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="up: logical CPUs each node offers (default 1)")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="up: GPUs each node offers (default 0)")
    parser.add_argument("--object-store-mb", type=int, default=256, help="up: object store per node (default 256)")
    parser.add_argument("--dashboard-port", type=int, default=None,
                        help="up: dashboard / job API port on 127.0.0.1 (default 8265, or a free one)")
    parser.add_argument("--address", default=None, help="status: a cluster's job API URL instead of the local one")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        opts = ClusterOptions(args.action, args.nodes, args.cpus_per_node, args.gpus_per_node, args.object_store_mb,
                              args.dashboard_port, args.address)
        opts.validate()
        code, result = run_cluster(opts)
        if args.json and result is not None:
            print_json(result)
        return code

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
