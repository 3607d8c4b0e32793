"""What the `cnnray compress` tests share: register a trained model, run the command in-process, list versions."""

from __future__ import annotations

import json
from typing import Any


def register(uri: str, m: Any, name: str) -> Any:
    """Register the `digits_model` fixture's weights as version 1 (alias challenger) of `name`."""
    from cnnray.serve import card_for_training
    from cnnray.data.example import example_image
    from cnnray.tracking.model_registry import register_weights

    card = card_for_training(m.cfg, m.info, lineage={"cnnray.data_fingerprint": m.info.fingerprint}, training={})
    return register_weights(uri, f"exp-{name}", f"run-{name}", m.weights, card, example=example_image(m.cfg.data, 1),
                            registered_name=name, alias="challenger")


def run_compress(capsys: Any, *args: str) -> tuple[int, dict[str, Any] | None, Any]:
    """(exit code, the --json result or None, captured output) of `cnnray compress ARGS`."""
    from workflows import compress

    code = compress.main(list(args))
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1] if out.out.strip() else "{}"
    return code, (json.loads(last) if last.startswith("{") else None), out


def versions(uri: str, name: str) -> list[int]:
    """The registered version numbers of `name`, ascending."""
    from mlflow.tracking import MlflowClient

    return sorted(int(v.version) for v in MlflowClient(uri).search_model_versions(f"name='{name}'"))
