"""What `cnnray cluster up|status` print: addresses, authentication, nodes, resources, jobs (over HTTP, no Ray import)."""

from __future__ import annotations

from typing import Any

from cnnray.cluster import auth
from cnnray.cluster.nodes import ClusterState, client_env, load_cluster_state, state_dir
from cnnray.jobs.client import Target, prepare

_SKIP_RESOURCES = ("node:", "accelerator_type:")


def format_up(state: ClusterState) -> str:
    """The `cluster up` message: where it is and how clients authenticate."""
    workers = len(state.nodes) - 1
    env = " ".join(f"{k}={v}" for k, v in client_env(state).items())
    return "\n".join([
        f"cluster up: {len(state.nodes)} node(s) (head + {workers} worker{'s' if workers != 1 else ''}) on 127.0.0.1, "
        f"{state.cpus_per_node:g} CPU / {state.gpus_per_node:g} GPU each",
        f"  address    {state.gcs_address}  (Ray drivers: ray.init, cnnray train; with the environment below)",
        f"  dashboard  {state.dashboard_url}  (job API: cnnray submit, cnnray jobs, ray job submit)",
        f"  auth       token authentication on; the token is in {state.token_file}",
        f"  clients    export {env}",
        "             (cnnray submit / jobs / cluster status use it without that)",
        "  stop       cnnray cluster down",
    ])


def _get(target: Target, path: str) -> Any:
    # deferred (heavy import): requests
    import requests

    r = requests.get(f"{target.url}{path}", headers=auth.bearer(target.token), timeout=10)
    r.raise_for_status()
    return r.json()


def _resources(rows: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for row in rows:
        for k, v in (row.get("resources_total") or {}).items():
            if not k.startswith(_SKIP_RESOURCES):
                total[k] = total.get(k, 0.0) + float(v)
    return total


def cluster_status(address: str | None = None) -> dict[str, Any]:
    """Nodes, resources and jobs of the given or the local cluster; running=False when there is none."""
    state = load_cluster_state()
    if address is None and (state is None or not state.is_running()):
        note = (f"no cluster started by `cnnray cluster up` (state in {state_dir()})" if state is None else
                f"the cluster recorded in {state_dir()} is not running (its head, pid {state.head.pid}, is gone); "
                "`cnnray cluster down` clears the record")
        return {"running": False, "message": note}
    target = prepare(address)
    nodes = _get(target, "/api/v0/nodes?limit=1000&detail=1")["data"]["result"]["result"]
    jobs = _get(target, "/api/jobs/")
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    return {
        "running": True, "dashboard": target.url, "local": target.local,
        "address": state.gcs_address if target.local and state else None,
        "nodes": [{"node_id": n["node_id"], "ip": n.get("node_ip"), "state": n.get("state"),
                   "head": bool(n.get("is_head_node")),
                   "resources": {k: v for k, v in (n.get("resources_total") or {}).items()
                                 if not k.startswith(_SKIP_RESOURCES)}} for n in nodes],
        "alive_nodes": len(alive), "resources": _resources(alive),
        "jobs": [{"submission_id": j.get("submission_id"), "status": j.get("status"),
                  "entrypoint": j.get("entrypoint"), "start_time": j.get("start_time")} for j in jobs
                 if j.get("submission_id")],
    }


def _res(r: dict[str, float]) -> str:
    keep = {k: v for k, v in r.items() if k in ("CPU", "GPU")}
    mem = r.get("memory")
    text = "  ".join(f"{k} {v:g}" for k, v in sorted(keep.items()))
    return text + (f"  memory {mem / 2**30:.1f} GiB" if mem else "")


def format_status(info: dict[str, Any]) -> str:
    """Human-readable `cluster status`."""
    if not info["running"]:
        return info["message"]
    lines = [f"cluster at {info['dashboard']}" + (f" (address {info['address']})" if info.get("address") else ""),
             f"nodes: {info['alive_nodes']} alive of {len(info['nodes'])}   total: {_res(info['resources'])}"]
    for n in info["nodes"]:
        lines.append(f"  {n['node_id'][:12]}  {n['ip']:<15} {n['state']:<6} {'head  ' if n['head'] else 'worker'}  "
                     f"{_res(n['resources'])}")
    lines.append(f"jobs: {len(info['jobs'])}")
    for j in sorted(info["jobs"], key=lambda j: j.get("start_time") or 0)[-10:]:
        lines.append(f"  {j['submission_id']}  {j['status']:<9} {(j['entrypoint'] or '')[:90]}")
    return "\n".join(lines)
