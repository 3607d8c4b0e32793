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

from cnnray import __version__
from cnnray.classifier.card_schema import validate_card
from cnnray.data.transforms import normalization_stats, source_defaults
from cnnray.errors import InvalidCardError, UserInputError
from cnnray.models.from_config import model_kwargs

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


def _check_not_newer(version: Any, where: str) -> None:
    """UserInputError for a card newer than this cnnray reads (before its fields are judged: it may hold new ones)."""
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise UserInputError(f"{where + ': ' if where else ''}model card format_version {version} is newer than "
                             f"this cnnray reads ({FORMAT_VERSION}); upgrade cnnray")


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
    def from_dict(cls, d: dict[str, Any], where: str = "") -> ModelCard:
        """Validate and build a card (InvalidCardError naming `where` and every problem; UserInputError on a
        card of another format or a newer one)."""
        if isinstance(d, dict):
            if d.get("format") != FORMAT:
                raise InvalidCardError([f"format: not a cnnray model card (format={d.get('format')!r}, "
                                        f"expected {FORMAT!r})"], where)
            _check_not_newer(d.get("format_version"), where)
        v = validate_card(d, where)
        _check_not_newer(v.format_version, where)  # a version given as text ("3") is only a number now
        i = v.input
        contract = InputContract(i.image_size, i.channels, tuple(i.mean), tuple(i.std), i.normalize, i.resize)
        return cls(v.architecture, dict(v.model_kwargs), tuple(v.class_names), contract, dict(v.lineage),
                   dict(v.training), v.weights_sha256, v.cnnray_version, v.format, v.format_version,
                   dict(v.compression or {}))

    @classmethod
    def read(cls, path: str | Path, where: str = "") -> ModelCard:
        """Read card.json (problems are reported as the card of `where`, the path by default)."""
        where = where or str(path)
        try:
            d = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidCardError([f"(card): not JSON text ({e})"], where) from None
        return cls.from_dict(d, where)


def card_for_training(cfg: Any, info: Any, *, lineage: dict[str, str], training: dict[str, Any],
                      compression: dict[str, Any] | None = None) -> ModelCard:
    """The card of a model trained with config `cfg` on data described by `info` (a DatasetInfo);
    `compression`: the structure its weights fit (a pruned network fine-tuned by `cnnray compress`)."""
    names = tuple(info.class_names) or tuple(str(i) for i in range(info.num_classes))
    mean, std = normalization_stats(cfg.data, info)  # what training normalized with (data.normalize_stats)
    contract = InputContract(
        image_size=int(info.image_size), channels=int(info.channels), mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std), normalize=bool(source_defaults(cfg.data).normalize),
        resize="tensor" if info.source in TENSOR_RESIZE_SOURCES else "pil")
    kwargs = {k: v for k, v in model_kwargs(cfg, info.num_classes, info.channels).items() if v is not None}
    # deferred (heavy import): pyarrow
    from cnnray.data import absolute_data_path

    training = {"precision": cfg.train.precision, "data": absolute_data_path(cfg.data).model_dump(mode="json"),
                "data_fingerprint": info.fingerprint, **training}
    return ModelCard(cfg.model.name, kwargs, names, contract, dict(lineage), training, cnnray_version=__version__,
                     format_version=2 if compression else 1, compression=dict(compression or {}))
