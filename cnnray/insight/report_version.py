"""`cnnray report` on a registered version: gather (tracking), render (report_html), write, log to its run."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cnnray.insight.report_html import render_report
from cnnray.tracking.insight_artifacts import log_insight_artifacts

REPORT_FOLDER = "report"


def report_file(out: Path | None, name: str, version: str) -> Path:
    """`out`/NAME-vVERSION.html (default out: ./cnnray_report); the name is reduced to safe file characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "model"
    return (out or Path("cnnray_report")) / f"{safe}-v{int(version)}.html"


def report_version(ref: Any, tracking_uri: str, out: Path | None, log: bool = True) -> dict[str, Any]:
    """Write the version's page; log it under report/ of the version's run unless `log` is false."""
    # deferred (heavy import): torch, PIL
    from cnnray.insight.report_gather import gather_report
    from cnnray.tracking.model_store import load_card, resolve

    version = resolve(ref, tracking_uri)
    report = gather_report(tracking_uri, version, load_card(version, tracking_uri))
    path = report_file(out, report.name, report.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_report(report), encoding="utf-8")
    tmp.replace(path)  # a reader (or a second report of the same version) never sees half a page
    artifacts = log_insight_artifacts(tracking_uri, version.run_id, [path], REPORT_FOLDER) if log and version.run_id else []
    figures = {"training": len(report.training_figures), "evaluation": sum(len(e.figures) for e in report.evaluations),
               "inspect": len(report.insight_figures), "search": len(report.tune_figures)}
    return {"model": report.label, "path": str(path), "run_id": version.run_id, "artifacts": artifacts,
            "figures": figures, "evaluations": len(report.evaluations), "decisions": len(report.decisions),
            "tuned": report.tune is not None, "compressed_from": [c["version"] for c in report.chain],
            "missing": report.notes, "bytes": path.stat().st_size}
