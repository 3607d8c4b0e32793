"""`ray start` for one node of a local multi-node cluster, every process of it bound to 127.0.0.1.

Run as `python -m cnnray.cluster.ray_node RAY_START_ARGS...` (what `cnnray cluster up` starts per node).

Why not plain `ray start --node-ip-address=127.0.0.1`: Ray 2.60 rewrites a loopback node address to
the machine's outward IP (`services.resolve_ip_for_localhost`), and then the GCS, raylets and
workers listen on every interface. Ray's single-host mode (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`,
the macOS/Windows default) keeps 127.0.0.1 for the node and everything it spawns, but `ray start`
refuses worker nodes in that mode. So: the environment (inherited by the raylet, agents and workers)
says single-host, and in this launcher only, the worker-node guard is lifted and the node IP pinned
to 127.0.0.1 (`ray_compat.pin_ray_start_loopback`, read from Ray 2.60's `scripts.py`/`services.py`);
on another Ray version this runs plain `ray start` (the node then binds the machine's IP, and a
warning says so).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

from cnnray.ray_compat import LOOPBACK_ENV, WRITTEN_FOR, pin_ray_start_loopback

LOOPBACK_IP = "127.0.0.1"


def pin_loopback() -> bool:
    """Make this process's `ray start` keep 127.0.0.1 as the node IP; False where unsupported."""
    # Checked without importing Ray: Ray reads the environment switch below when it is imported.
    if tuple(int(p) for p in version("ray").split(".")[:2]) != WRITTEN_FOR:
        print("warning: Ray is not the version cnnray's loopback launcher was written for; this node binds "
              "the machine's IP (token authentication still applies)", file=sys.stderr)
        return False
    os.environ[LOOPBACK_ENV] = "0"  # inherited by every process the node starts
    pin_ray_start_loopback(LOOPBACK_IP)
    return True


def main(argv: list[str] | None = None) -> int:
    """`ray start ARGS` with the loopback pin; returns when the node stops (run it with --block)."""
    pin_loopback()
    # deferred (heavy import): ray
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", "start", *(sys.argv[1:] if argv is None else argv)]
    ray_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
