"""Register a Ray Train checkpoint (best_model.pt, meta.json, config.yaml) as a new self-contained version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnray.config import config_hash, load_config
from cnnray.errors import DataError
from cnnray.tracking.lineage import lineage_tags

# The checkpoint files cnnray.run.ray_worker writes (named here to keep Ray out of this import).
BEST_FILE, META_FILE, CONFIG_FILE = "best_model.pt", "meta.json", "config.yaml"


def register_checkpoint(checkpoint_dir: str, tracking_uri: str, experiment: str, name: str,
                        alias: str | None, make_card: Callable[..., Any]) -> dict[str, Any]:
    """Rebuild the card from the checkpoint's config and its data, then register the best weights.

    `make_card(cfg, info, lineage=..., training=...)` builds the ModelCard (`cnnray.serve.card_for_training`).
    """
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.classifier.classifier import load_weights
    from cnnray.data import absolute_data_path, describe_dataset
    from cnnray.data.example import example_image
    from cnnray.tracking.model_registry import register_weights

    d = Path(checkpoint_dir)
    missing = [f for f in (BEST_FILE, META_FILE, CONFIG_FILE) if not (d / f).is_file()]
    if missing:
        raise DataError(f"{d} is not a cnnray training checkpoint: missing {', '.join(missing)}")
    cfg = load_config([str(d / CONFIG_FILE)])
    cfg = cfg.model_copy(update={"data": absolute_data_path(cfg.data)})
    info = describe_dataset(cfg.data)
    meta = json.loads((d / META_FILE).read_text())
    weights = load_weights(d / BEST_FILE)
    tags = lineage_tags(config_hash=config_hash(cfg), data_fingerprint=info.fingerprint, ray_run_name=d.parent.name,
                        weights=str(meta.get("weights", "raw")), extra={"cnnray.registered_from": str(d)})
    best = meta.get("best_metrics") or {}
    tags.update({f"cnnray.metric.{k}": f"{float(best[k]):.6g}" for k in ("val_acc", "val_top5", "val_loss", "val_f1_macro")
                 if k in best})
    card = make_card(cfg, info, lineage=tags, training={"best_epoch": meta.get("best_epoch"),
                                                         "weights": meta.get("weights", "raw")})
    reg = register_weights(tracking_uri, experiment, f"register-{d.parent.name}", weights, card,
                           example=example_image(cfg.data, info.channels), registered_name=name, alias=alias, tags=tags)
    return {"model_uri": reg.model_uri, "registered_name": name, "version": reg.version, "alias": alias}
