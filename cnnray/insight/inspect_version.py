"""`cnnray inspect` on a registered version: load it and its validation images, draw, log to its run.

Shared by `cnnray inspect` and `cnnray report --inspect`; arguments are checked by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnray.errors import UserInputError
from cnnray.insight.inspect_options import default_out
from cnnray.tracking.insight_artifacts import log_insight_artifacts


def inspect_version(ref: Any, tracking_uri: str, data_keys: list[str], out: Path | None, requested: list[str],
                    attention_named: bool, layers: list[str] | None, n_images: int) -> dict[str, Any]:
    """Figures and summary.json in `out` (default ./cnnray_inspect/NAME-vV) and the run's insight/ folder."""
    # deferred (heavy import): torch, PIL
    from cnnray.insight.inspect_run import InspectInput, check_request, inspect_model
    from cnnray.serve.data import data_config_for, load_split
    from cnnray.tracking.model_store import load_version

    clf, version = load_version(ref, tracking_uri, channels_last=False)
    try:
        parts = check_request(clf.model, requested, attention_named, layers)
    except ValueError as e:
        raise UserInputError(str(e)) from None
    split = load_split(data_config_for(clf.card, data_keys), "val")
    images, y = split.x[:n_images], split.y[:n_images]
    inp = InspectInput(clf.model, images, clf.transform(images.to(clf.device)), y, tuple(clf.card.class_names),
                       f"{version.label} ({clf.card.architecture})")
    out = out or default_out(version.name, version.version)
    summary = inspect_model(inp, out, parts, requested, layers)
    files = [out / f for f in summary["figures"].values()] + [out / "summary.json"]
    summary.update(model=version.label, run_id=version.run_id,
                   artifacts=log_insight_artifacts(tracking_uri, version.run_id, files))
    return summary
