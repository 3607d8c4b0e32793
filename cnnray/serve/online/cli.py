"""The argument side of `cnnray serve`: options from parsed arguments, the status/stop actions, the status text."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cnnray.errors import UserInputError
from cnnray.serve.online.options import ServeOptions, check_app_name
from cnnray.serve.options import split_keys


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """ServeOptions from `cnnray serve` arguments (tracking.uri=... among the positionals)."""
    if not args.model:
        raise UserInputError("--model is required: models:/NAME@ALIAS (followed) or models:/NAME/VERSION; "
                             "or an action: status, stop")
    keys = split_keys(args.overrides)
    return ServeOptions(args.model, keys.tracking_uri, args.name, args.replicas, args.autoscale,
                        args.cpus_per_replica, args.gpus_per_replica, args.max_batch_size, args.batch_wait_ms,
                        args.max_images, args.follow_interval, args.host, args.port, args.address, args.verbose)


def run_action(action: str, name: str) -> dict[str, Any]:
    """`status` or `stop` of the app `name`."""
    # deferred: command imports tracking (MLflow) only when used
    from cnnray.serve.online.command import serve_status, serve_stop

    check_app_name(name)
    return serve_status(name) if action == "status" else serve_stop(name)


def describe_status(s: dict[str, Any]) -> str:
    """`serve status` as lines: the app, then one line per replica with its version and what it refused."""
    if not s.get("answering"):
        return f"app {s['app']!r} at {s['url']}: not answering ({s.get('error')})"
    lines = [f"app {s['app']!r} at {s['url']}: serving {s['model']}"
             + (f", following {s['following']} every {s['follow_interval_s']:g} s" if s.get("following") else "")]
    now = time.time()
    for r in s.get("replicas", []):
        node = f"{r['node']}, Ray node {str(r.get('node_id') or '?')[:8]}"
        line = (f"  replica {r['replica']} (pid {r['pid']} on {node}): v{r['version']}, loaded "
                f"{now - r['loaded_at']:.0f} s ago, alias checked {now - r['last_check']:.0f} s ago")
        lines.append(line)
        for v, why in sorted(r.get("refused", {}).items()):
            lines.append(f"    refused v{v}: {why}")
        if r.get("last_error"):
            lines.append(f"    last error: {r['last_error']}")
    return "\n".join(lines)
