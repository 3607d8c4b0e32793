"""`model.init_from`: where a run's first weights come from, resolved and checked on the driver before any
rank starts (bad weights exit 2), then staged as one file under the run's folder that every rank reads
(`stage.py`): the weights never ride inside the JSON plan.

Sources: a state_dict file (torchvision or cnnray format, `.safetensors` too), `torchvision:WEIGHTS_NAME`
(TORCH_HOME's cache; downloaded only where the machine can) or a registered version (`models:/NAME@ALIAS`,
`models:/NAME/VERSION`: continual training). The loading rules (new head, adapted input conv, attention
near identity, stem refusal) live in `cnnray/models/adapt_weights.py`; here the source is found and judged.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnray.config import Config
from cnnray.data import DatasetInfo
from cnnray.errors import ConfigError, UserInputError
from cnnray.models import WeightsError, load_initial_weights, read_state_file, sha256_file, torchvision_state
from cnnray.models.from_config import build_model
from cnnray.models.torchvision_weights import torchvision_classes

KEY = "model.init_from"


@dataclass(frozen=True)
class InitSource:
    """Resolved initial weights: what lineage records and what the ranks load."""

    spec: str  # model.init_from as given
    label: str  # lineage: models:/NAME/VERSION, torchvision:NAME, or the file's name
    sha256: str  # of the weights as loaded (a file's bytes; a registered version's weights.pt)
    classes: tuple[str, ...] | None  # the source's class names where known (head rows are kept by name)
    parent: str | None = None  # NAME/VERSION of a registered source
    report: tuple[str, ...] = ()  # what loading them into this run's model did (new head, adapted conv, ...)
    state: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def summary(self) -> str:
        """One console line: where the first weights come from and what loading them did."""
        return f"initial weights: {self.label} (sha256 {self.sha256[:12]})" + "".join(f"; {r}" for r in self.report)

    def tags(self) -> dict[str, str]:
        """Lineage tags of the run and of the version it registers."""
        tags = {"cnnray.init_from": self.label, "cnnray.init_sha256": self.sha256}
        if self.parent:
            tags["cnnray.parent_version"] = self.parent
        return tags


def _state_sha256(state: dict[str, Tensor]) -> str:
    """A digest of tensors by name (for sources that are not one file of ours)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _from_file(spec: str) -> tuple[dict[str, Tensor], str, str, None]:
    path = Path(spec).expanduser().resolve()
    state = read_state_file(path)
    return state, path.name, sha256_file(path), None


def _from_torchvision(spec: str) -> tuple[dict[str, Tensor], str, str, tuple[str, ...] | None]:
    name = spec.split(":", 1)[1]
    state = torchvision_state(name)
    classes = torchvision_classes(name)
    return state, spec, _state_sha256(state), tuple(classes) if classes else None


def _from_registry(spec: str, cfg: Config, info: DatasetInfo) -> tuple[dict[str, Tensor], str, str, tuple[str, ...], str,
                                                                       str | None]:
    # deferred (documented dependency): tracking imports MLflow, needed only for a registered source
    from cnnray.tracking import resolve_tracking_uri
    from cnnray.tracking.model_store import fetch, resolve

    from cnnray.classifier import WEIGHTS_FILE, ModelCard

    uri = resolve_tracking_uri(cfg.tracking.uri)
    try:
        version = resolve(spec, uri)
        with tempfile.TemporaryDirectory(prefix="cnnray-init-") as tmp:
            files = fetch(version, uri, tmp)
            card = ModelCard.read(files / "card.json", where=version.label)
            state = read_state_file(files / WEIGHTS_FILE)
            digest = sha256_file(files / WEIGHTS_FILE)
    except UserInputError as e:
        raise ConfigError(f"{KEY}={spec}: {e}") from None
    contract = card.input
    if int(contract.channels) != int(info.channels):
        raise ConfigError(f"{KEY}={spec}: {version.label} takes {contract.channels}-channel images, the data has "
                          f"{info.channels}; continual training needs data of the same kind")
    if int(contract.image_size) != int(cfg.data.image_size):
        raise ConfigError(f"{KEY}={spec}: {version.label} was trained at image_size {contract.image_size}, this run "
                          f"uses data.image_size={cfg.data.image_size}; set data.image_size={contract.image_size}")
    note = _normalization_note(cfg, info, contract, version.label)
    return state, version.label, digest, tuple(card.class_names), f"{version.name}/{version.version}", note


def _normalization_note(cfg: Config, info: DatasetInfo, contract: Any, label: str) -> str | None:
    """A log line when this run normalizes its inputs otherwise than the source was trained with: its features
    then see shifted inputs at the start (a measurable drop in the first epochs), so say how to match."""
    from cnnray.data.transforms import normalization_stats

    mean, std = normalization_stats(cfg.data, info)
    if all(abs(a - b) < 1e-4 for a, b in zip((*mean, *std), (*contract.mean, *contract.std))):
        return None
    fmt = lambda v: "/".join(f"{x:.3f}" for x in v)  # noqa: E731
    other = "imagenet" if cfg.data.normalize_stats == "dataset" else "dataset"
    return (f"normalization differs from {label}'s (mean {fmt(contract.mean)} std {fmt(contract.std)}; this run: "
            f"mean {fmt(mean)} std {fmt(std)}): its features start on shifted inputs; data.normalize_stats={other} "
            "may match it")


def resolve_init_source(cfg: Config, info: DatasetInfo) -> InitSource | None:
    """The checked initial weights of this run, or None; ConfigError (exit 2) naming what is wrong."""
    spec = cfg.model.init_from
    if not spec:
        return None
    if cfg.train.resume:  # prepare_run says so first; kept for callers that resolve without it
        raise ConfigError(f"{KEY} with train.resume=true: a resume continues from its own checkpoint's weights; "
                          f"drop {KEY}")
    parent = note = None
    try:
        if spec.startswith("models:/"):
            state, label, digest, classes, parent, note = _from_registry(spec, cfg, info)
        elif spec.startswith("torchvision:"):
            state, label, digest, classes = _from_torchvision(spec)
            if cfg.data.normalize_stats != "imagenet":  # torchvision's weights saw ImageNet-normalized images
                note = "torchvision's weights were trained on ImageNet-normalized images: set data.normalize_stats=imagenet"
        else:
            state, label, digest, classes = _from_file(spec)
        model = build_model(cfg, info.num_classes, info.channels)
        report = load_initial_weights(model, state, strict=cfg.model.init_strict, source_classes=classes,
                                      target_classes=info.class_names or None)
    except WeightsError as e:
        raise ConfigError(f"{KEY}={spec}: {e}") from None
    return InitSource(spec, label, digest, classes, parent, (*report.lines(), *([note] if note else [])), state)


def encode_state(state: dict[str, Any]) -> bytes:
    """torch.save bytes of a state_dict of tensors (what a staged weights file holds)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in state.items()}, buf)
    return buf.getvalue()
