"""The model card: what a registered version needs besides its weights to be rebuilt and fed correctly.

Plain JSON (no pickle): architecture and its options, class names, the input contract (size, channels,
normalization, resize method) and lineage. `card.json` and `weights.pt` (a state_dict of plain tensors)
are everything `cnnray.serve` loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnray.errors import UserInputError

FORMAT = "cnnray.image-classifier"
FORMAT_VERSION = 2  # the newest card this cnnray reads (2: compressed versions)
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
# Array sources (digits, synthetic, cifar) resize tensors with torch's antialiased bilinear;
# file sources (imagefolder, parquet) decode and resize with PIL's bilinear. Serving repeats the same one.
TENSOR_RESIZE_SOURCES = frozenset({"digits", "synthetic", "cifar10", "cifar100"})


@dataclass(frozen=True)
class InputContract:
    """What the network expects: uint8 images at image_size x image_size with `channels`, then normalized."""

    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: bool = True
    resize: str = "pil"  # "pil" (PIL bilinear) or "tensor" (torch bilinear, antialiased)


@dataclass(frozen=True)
class ModelCard:
    """Everything but the weights; round-trips through JSON."""

    architecture: str
    model_kwargs: dict[str, Any]  # create_model(architecture, **model_kwargs), num_classes and in_chans included
    class_names: tuple[str, ...]
    input: InputContract
    lineage: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # precision, best epoch and metrics, data config
    weights_sha256: str = ""
    cnnray_version: str = ""
    format: str = FORMAT
    format_version: int = 1  # 2 when `compression` is set: a cnnray that cannot rebuild it refuses it
    compression: dict[str, Any] = field(default_factory=dict)  # method, its structure, source version, checks

    @property
    def num_classes(self) -> int:
        """Outputs of the network."""
        return int(self.model_kwargs["num_classes"])

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Validate the format and build a card (UserInputError on a card this version cannot read)."""
        if d.get("format") != FORMAT:
            raise UserInputError(f"not a cnnray model card (format={d.get('format')!r}, expected {FORMAT!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise UserInputError(f"model card format_version {d['format_version']} is newer than this cnnray "
                                 f"reads ({FORMAT_VERSION}); upgrade cnnray")
        inp = d["input"]
        contract = InputContract(int(inp["image_size"]), int(inp["channels"]), tuple(inp["mean"]), tuple(inp["std"]),
                                 bool(inp.get("normalize", True)), str(inp.get("resize", "pil")))
        return cls(d["architecture"], dict(d["model_kwargs"]), tuple(d["class_names"]), contract,
                   dict(d.get("lineage", {})), dict(d.get("training", {})), str(d.get("weights_sha256", "")),
                   str(d.get("cnnray_version", "")), d["format"], int(d["format_version"]),
                   dict(d.get("compression") or {}))

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read card.json."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def card_for_training(cfg: Any, info: Any, *, lineage: dict[str, str], training: dict[str, Any],
                      compression: dict[str, Any] | None = None) -> ModelCard:
    """The card of a model trained with config `cfg` on data described by `info` (a DatasetInfo);
    `compression`: the structure its weights fit (a pruned network fine-tuned by `cnnray compress`)."""
    from cnnray import __version__
    from cnnray.data.transforms import normalization_stats, source_defaults
    from cnnray.train.build import model_kwargs

    names = tuple(info.class_names) or tuple(str(i) for i in range(info.num_classes))
    mean, std = normalization_stats(cfg.data, info)  # what training normalized with (data.normalize_stats)
    contract = InputContract(
        image_size=int(info.image_size), channels=int(info.channels), mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std), normalize=bool(source_defaults(cfg.data).normalize),
        resize="tensor" if info.source in TENSOR_RESIZE_SOURCES else "pil")
    kwargs = {k: v for k, v in model_kwargs(cfg, info.num_classes, info.channels).items() if v is not None}
    from cnnray.data import absolute_data_path

    training = {"precision": cfg.train.precision, "data": absolute_data_path(cfg.data).model_dump(mode="json"),
                "data_fingerprint": info.fingerprint, **training}
    return ModelCard(cfg.model.name, kwargs, names, contract, dict(lineage), training, cnnray_version=__version__,
                     format_version=2 if compression else 1, compression=dict(compression or {}))
