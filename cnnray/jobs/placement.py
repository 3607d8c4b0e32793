"""Where a job's actors ran: node ids per actor class, from the cluster's state API (over HTTP, no Ray import).

This is how a user (and the tests) see that the DDP workers of a submitted `train` ran on different
nodes, and which nodes a `tune` search's trials used. Dead actors stay listed, so a finished job can
be asked.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cnnray.cluster import auth
from cnnray.jobs.client import Target

TRAIN_WORKER = "RayTrainWorker"  # Ray Train V2's worker actor: one per DDP rank
# Tune's actor for a function trainable (Ray 2.60): one per trial; it trains when tune.trial_runner is actor.
TRIAL_ACTOR = "ImplicitFunc"


def job_actors(target: Target, ray_job_id: str, limit: int = 10000) -> list[dict[str, Any]]:
    """Every actor the job created (alive or dead): class name, node id, state, pid."""
    # deferred (heavy import): requests
    import requests

    params = {"limit": limit, "detail": 1, "filter_keys": ["job_id"], "filter_predicates": ["="],
              "filter_values": [ray_job_id]}
    r = requests.get(f"{target.url}/api/v0/actors", params=params, headers=auth.bearer(target.token), timeout=20)
    r.raise_for_status()
    rows = r.json()["data"]["result"]["result"]
    return [{"class_name": a.get("class_name"), "node_id": a.get("node_id"), "state": a.get("state"),
             "pid": a.get("pid"), "actor_id": a.get("actor_id")} for a in rows]


def placement(actors: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{node id: {actor class: count}}."""
    out: dict[str, Counter] = {}
    for a in actors:
        out.setdefault(a["node_id"] or "?", Counter())[a["class_name"] or "?"] += 1
    return {node: dict(c) for node, c in out.items()}


def worker_nodes(actors: list[dict[str, Any]], class_name: str = TRAIN_WORKER) -> list[str]:
    """Distinct node ids that ran actors of class_name (Ray Train workers by default)."""
    # Matched on the last dotted part: Ray may report a qualified name ("wrap_function.<locals>.ImplicitFunc").
    return sorted({a["node_id"] for a in actors
                   if (a["class_name"] or "").rsplit(".", 1)[-1] == class_name and a["node_id"]})
