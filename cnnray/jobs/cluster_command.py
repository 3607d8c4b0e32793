"""`cnnray cluster up|status|down` from its options: start, describe or stop the multi-node cluster on this machine.

It lives in `jobs`, not `cluster`: `status` reads the cluster through the job API (`cnnray.jobs.status`), and
`cluster` sits below `jobs` in the direction of imports."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from cnnray.cluster import nodes as cluster
from cnnray.console import EXIT_FAILED
from cnnray.errors import UserInputError
from cnnray.jobs import status

ACTIONS = ("up", "status", "down")


@dataclass(frozen=True)
class ClusterOptions:
    """The options of `cnnray cluster` as given; `up` checks its numbers itself before starting any node."""

    action: str
    nodes: int = 2  # up: nodes in all, head included
    cpus_per_node: int = 1
    gpus_per_node: int = 0
    object_store_mb: int = 256
    dashboard_port: int | None = None  # up: default 8265, or a free one
    address: str | None = None  # status: a cluster's job API URL instead of the local one

    def validate(self) -> None:
        """UserInputError (exit 2) for an unknown action."""
        if self.action not in ACTIONS:
            raise UserInputError(f"cnnray cluster {self.action}: choose one of {', '.join(ACTIONS)}")


def run_cluster(opts: ClusterOptions) -> tuple[int, dict[str, Any] | None]:
    """Do the action, printing what it shows; (exit code, the --json object or None after a failed `up`)."""
    if opts.action == "up":
        try:
            state = cluster.up(opts.nodes, opts.cpus_per_node, opts.gpus_per_node,
                               object_store_mb=opts.object_store_mb, dashboard_port=opts.dashboard_port)
        except cluster.ClusterError as e:  # started nodes were stopped again: nothing is left running
            print(f"error: cluster up failed: {e}", file=sys.stderr)
            return EXIT_FAILED, None
        print(status.format_up(state), flush=True)
        return 0, state.summary()
    if opts.action == "down":
        out = cluster.down()
        print(f"cluster at {out['address']} stopped ({out['stopped']} processes)", flush=True)
        return 0, out
    info = status.cluster_status(opts.address)
    print(status.format_status(info), flush=True)
    return (0 if info["running"] else EXIT_FAILED), info
