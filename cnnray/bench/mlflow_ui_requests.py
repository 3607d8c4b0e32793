"""The HTTP requests the MLflow UI sends to open a run page, replayed and timed (no browser).

Read off MLflow 3.17's UI in headless Chromium: the run page loads the app's HTML, fetches the run through
GraphQL (`GetRun`: info, params, metrics, tags), lists its first 10 child runs for "About this run > Child
runs" (`runs/search`, parent filter, newest first) and fetches the experiment's 50 newest runs.
"""

from __future__ import annotations

import json
import time
import urllib.request
from statistics import median
from typing import Any

# The fields of the UI's GetRun query that carry data (the UI asks for a few more: inputs, outputs, versions).
GET_RUN = """query GetRun($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) {
  apiError { code message }
  run { info { runName status runUuid experimentId artifactUri startTime endTime lifecycleStage userId }
        data { metrics { key value step timestamp } params { key value } tags { key value } } } } }"""


def _http(url: str, body: dict[str, Any] | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def _median_s(url: str, body: dict[str, Any] | None, repeats: int) -> tuple[float, bytes]:
    times, out = [], b""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = _http(url, body)
        times.append(time.perf_counter() - t0)
    return median(times), out


def run_page_requests(uri: str, experiment_id: str, run_id: str, repeats: int = 5,
                      children: int = 100) -> dict[str, float]:
    """Median seconds of each request of the UI's run page for `run_id`, and of a `children`-run page of its
    children (what the experiment page lists); AssertionError if an answer is not the run asked for."""
    api = f"{uri}/ajax-api/2.0/mlflow"
    newest = {"experiment_ids": [experiment_id], "order_by": ["attributes.start_time DESC"],
              "run_view_type": "ACTIVE_ONLY", "filter": ""}
    kids = {**newest, "filter": f"tags.`mlflow.parentRunId` = '{run_id}'"}
    out: dict[str, float] = {}
    out["ui_html_s"], html = _median_s(f"{uri}/", None, repeats)
    assert b"<html" in html.lower(), html[:200]
    out["ui_get_run_s"], run = _median_s(f"{uri}/graphql", {"operationName": "GetRun", "query": GET_RUN,
                                                              "variables": {"data": {"runId": run_id}}}, repeats)
    got = json.loads(run)["data"]["mlflowGetRun"]["run"]
    assert got and got["info"]["runUuid"] == run_id, run[:500]
    out["ui_child_runs_s"], found = _median_s(f"{api}/runs/search", {**kids, "max_results": 10}, repeats)
    assert all(r["data"]["tags"] for r in json.loads(found).get("runs", [])), found[:500]
    out["ui_newest_50_s"], _ = _median_s(f"{api}/runs/search", {**newest, "max_results": 50}, repeats)
    out["http_children_page_s"], found = _median_s(f"{api}/runs/search", {**kids, "max_results": children}, repeats)
    out["http_children_page_runs"] = len(json.loads(found).get("runs", []))
    return out
