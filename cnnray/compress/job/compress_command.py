"""`cnnray compress` from its options: every check on the command line before any work (exit 2), then the job
(`main.compress_version`) in a scratch folder."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnray.compress.job.candidates import CompressOptions
from cnnray.compress.job.main import compress_version
from cnnray.compress.job.runs import split_training_keys
from cnnray.compress.methods import check_method
from cnnray.config import load_config
from cnnray.errors import UserInputError
from cnnray.serve.options import CommandKeys, split_keys
from cnnray.tracking.uri import ModelRef, parse_model_uri


@dataclass(frozen=True)
class CompressJobOptions:
    """The options of `cnnray compress` as given (defaults: the command's); `validate()` before `run_compress`."""

    model: str
    method: str
    overrides: tuple[str, ...] = ()
    max_acc_drop: float = 1.0
    tolerance: float = 1e-3
    alias: str | None = None
    threads: int = 1
    repeats: int = 20
    amount: float = 0.5
    criterion: str = "l1"
    unstructured: bool = False
    temperature: float = 4.0
    alpha: float = 0.7
    calibration: int = 512
    onnx_int8: bool = False
    qat: bool = False
    compile: bool = True

    @cached_property
    def ref(self) -> ModelRef:
        """The parsed --model; UserInputError for a malformed URI."""
        return parse_model_uri(self.model)

    @cached_property
    def split_overrides(self) -> tuple[list[str], list[str]]:
        """(training keys of the method's run, the rest); ConfigError for a training key the method ignores."""
        return split_training_keys(self.method, list(self.overrides))

    @cached_property
    def keys(self) -> CommandKeys:
        """The data.* / tracking.* keys, checked against the config schema."""
        return split_keys(self.split_overrides[1])

    def _check_ranges(self) -> None:
        """Ranges of the numeric options (ValueError naming the option)."""
        if self.max_acc_drop < 0 or self.tolerance < 0 or self.threads < 1 or self.repeats < 1:
            raise ValueError("--max-acc-drop and --tolerance must be >= 0, --threads and --repeats >= 1")
        if not 0 < self.amount < 1:
            raise ValueError(f"--amount {self.amount:g}: the fraction of channels removed must be in (0, 1)")
        if self.criterion not in ("l1", "bn_gamma"):
            raise ValueError(f"--criterion {self.criterion!r}: choose l1 or bn_gamma")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1:
            raise ValueError(f"--temperature must be > 0 (got {self.temperature:g}) and --alpha in [0, 1] "
                             f"(got {self.alpha:g})")
        if self.calibration < 1:
            raise ValueError(f"--calibration {self.calibration}: at least one image")

    def validate(self) -> None:
        """UserInputError (exit 2) for bad input, before the version is even loaded."""
        if self.ref.run_id:
            raise UserInputError(f"--model {self.model}: compress takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS), so the result can be registered beside it")
        try:
            check_method(self.method)
            self._check_ranges()
        except ValueError as e:
            raise UserInputError(str(e)) from None
        training = self.split_overrides[0]
        untrained = (self.method == "quantize" and not self.qat) or (self.method == "prune" and self.unstructured)
        if training and untrained:
            raise UserInputError(f"{training[0].split('=', 1)[0]}: no training run here (training keys go with prune, "
                                 "distill and quantize --qat; unstructured pruning is not fine-tuned)")
        _ = self.keys  # the data and tracking keys checked now (and kept for the run)
        if training:  # bad keys and values exit 2 now, before the version is even loaded
            load_config(overrides=[o for o in training if not o.startswith("model.")])


def run_compress(opts: CompressJobOptions, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress, gate, measure, register in a scratch folder; the result object (`registered` False: refused).
    A training run that did not finish raises CompressTrainingFailed (nothing registered)."""
    training = opts.split_overrides[0]
    method_opts = CompressOptions(amount=opts.amount, criterion=opts.criterion, temperature=opts.temperature,
                                  alpha=opts.alpha, calibration=opts.calibration, onnx_int8=opts.onnx_int8,
                                  compile=opts.compile, qat=opts.qat, unstructured=opts.unstructured, training=training)
    with tempfile.TemporaryDirectory(prefix="cnnray-compress-") as tmp:
        return compress_version(opts.ref, opts.keys, opts.method, Path(tmp), max_acc_drop=opts.max_acc_drop,
                                tolerance=opts.tolerance, alias=opts.alias, threads=opts.threads,
                                repeats=opts.repeats, opts=method_opts, on_line=on_line)
