"""The plan every rank of a run gets: a frozen, typed LoopConfig made by `make_loop_config` (one training
run) or by a Tune trial, and read by the per-rank entry (`rank_loop.run_loop`). It crosses process boundaries
as JSON (a local rank's stdin) or pickled by Ray; both round-trip through `to_json` / `from_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cnnray.config import Config
from cnnray.data import DatasetInfo


@dataclass(frozen=True)
class InitState:
    """What a run starts from besides its config (`model.init_from`, the fine-tunes of `cnnray compress`); see
    `init_state.py`. Weights travel as files under the run's folder (`stage.py`), never inside this plan."""

    weights_path: str | None = None  # a staged state_dict every rank loads into the built (and reshaped) model
    # model.init_from: {"strict", "source_classes"}: loaded by the fitting rules (new head, adapted input conv,
    # attention near identity); None: an exact, strict load (compress's own weights)
    adapt: dict[str, Any] | None = None
    structure: dict[str, Any] | None = None  # a model card's `compression` entry applied before the weights load
    teacher: dict[str, Any] | None = None  # {"card", "weights_path" (staged), "temperature", "alpha"}: distillation
    qat: dict[str, Any] | None = None  # {"input_shape": [C, H, W]}: train with fake quantization


@dataclass(frozen=True)
class LoopConfig:
    """Everything a rank needs to train: the validated config, the data set's facts, where the run lives."""

    cfg: Config
    info: DatasetInfo
    loader_kind: str  # "memory" or "streaming"
    run_dir: str
    threads: int
    test_hooks: dict[str, Any] = field(default_factory=dict)  # cnnray's own fault injection, read on the driver
    init_checkpoint: str | None = None  # path or URI of a checkpoint to start from (resume_from, a Tune restore)
    skip_checkpoints: tuple[str, ...] = ()  # Ray's own latest checkpoints that train.resume_from passes over
    init: InitState = field(default_factory=InitState)

    def to_json(self) -> str:
        """JSON text (the config as its JSON dump)."""
        d = asdict(self)
        d["cfg"] = self.cfg.model_dump(mode="json")
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> LoopConfig:
        """The LoopConfig `to_json` wrote (the config validated again)."""
        d = json.loads(text)
        info = d["info"]
        return cls(cfg=Config.model_validate(d["cfg"]),
                   info=DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.items()}),
                   loader_kind=d["loader_kind"], run_dir=d["run_dir"], threads=int(d["threads"]),
                   test_hooks=dict(d.get("test_hooks") or {}), init_checkpoint=d.get("init_checkpoint"),
                   skip_checkpoints=tuple(d.get("skip_checkpoints") or ()), init=InitState(**(d.get("init") or {})))

    def replace(self, **changes: Any) -> LoopConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)
