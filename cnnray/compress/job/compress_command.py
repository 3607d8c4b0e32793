"""`cnnray compress` from its options: every check on the command line before any work (exit 2), then the job
(`main.compress_version`) in a scratch folder. The options that shape the result are the command recorded on
the version it registers (`command()`, the `cnnray.compress.command` tag); `from_command` turns a recorded
command back into options, and `compress_loaded` runs them on a source held in memory (`cnnray replay`)."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnray.compress.job.candidates import CompressOptions
from cnnray.compress.job.main import CompressOutcome, compress_classifier, compress_version
from cnnray.compress.job.runs import split_training_keys
from cnnray.compress.methods import check_method
from cnnray.config import load_config
from cnnray.errors import UserInputError
from cnnray.serve.options import CommandKeys, split_keys
from cnnray.tracking.uri import ModelRef, parse_model_uri


# The options that shape what `cnnray compress` registers (its weights, card and evidence), recorded with the
# training and data keys; --alias (where the result points) is not among them.
COMMAND_FIELDS = ("method", "amount", "criterion", "unstructured", "temperature", "alpha", "calibration",
                  "onnx_int8", "qat", "compile", "max_acc_drop", "tolerance", "threads", "repeats")
_FLAGS = {"unstructured": "--unstructured", "onnx_int8": "--onnx-int8", "qat": "--qat", "compile": "--no-compile"}


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

    @classmethod
    def from_command(cls, model: str, command: dict[str, Any], overrides: tuple[str, ...] = ()) -> CompressJobOptions:
        """The options a recorded command stands for, on `model`; `overrides` come after the recorded keys.
        UserInputError for a command this cnnray cannot read (validate() still checks the values)."""
        unknown = sorted(set(command) - set(COMMAND_FIELDS) - {"training", "data"})
        lists = all(isinstance(command.get(k, []), list) for k in ("training", "data"))
        if unknown or not isinstance(command.get("method"), str) or not lists:
            raise UserInputError(f"the recorded compression command {command!r} is not one this cnnray reads"
                                 + (f" (unknown fields: {', '.join(unknown)})" if unknown else ""))
        fields = {f: command[f] for f in COMMAND_FIELDS if f in command}
        keys = tuple(str(k) for k in command.get("training", []) + command.get("data", []))
        return cls(model=model, overrides=keys + tuple(overrides), **fields)

    def command(self) -> dict[str, Any]:
        """What shapes the result, for the `cnnray.compress.command` tag: COMMAND_FIELDS, the training keys of the
        method's run and the data keys (not tracking.*: where it is recorded)."""
        return {**{f: getattr(self, f) for f in COMMAND_FIELDS}, "training": list(self.split_overrides[0]),
                "data": list(self.keys.data)}

    @property
    def trains(self) -> bool:
        """Whether the method runs a training run (prune's fine-tune, distill, quantize --qat)."""
        return (self.method in ("prune", "distill") and not self.unstructured) or (self.method == "quantize" and self.qat)

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
        if training and not self.trains:
            raise UserInputError(f"{training[0].split('=', 1)[0]}: no training run here (training keys go with prune, "
                                 "distill and quantize --qat; unstructured pruning is not fine-tuned)")
        _ = self.keys  # the data and tracking keys checked now (and kept for the run)
        if training:  # bad keys and values exit 2 now, before the version is even loaded
            load_config(overrides=[o for o in training if not o.startswith("model.")])


def command_line(model: str, command: dict[str, Any]) -> str:
    """The `cnnray compress` command line a recorded command stands for (options at their defaults left out)."""
    default = CompressJobOptions(model, str(command["method"]))
    parts = ["cnnray", "compress", "--model", model, "--method", str(command["method"])]
    for f in COMMAND_FIELDS[1:]:
        value = command.get(f, getattr(default, f))
        if value == getattr(default, f):
            continue
        if f in _FLAGS:
            parts.append(_FLAGS[f])
        else:
            parts += [f"--{f.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(p) for p in parts + list(command.get("training", [])) + list(command.get("data", [])))


def _method_options(opts: CompressJobOptions) -> CompressOptions:
    return CompressOptions(amount=opts.amount, criterion=opts.criterion, temperature=opts.temperature,
                           alpha=opts.alpha, calibration=opts.calibration, onnx_int8=opts.onnx_int8,
                           compile=opts.compile, qat=opts.qat, unstructured=opts.unstructured,
                           training=opts.split_overrides[0])


def run_compress(opts: CompressJobOptions, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress, gate, measure, register in a scratch folder; the result object (`registered` False: refused).
    A training run that did not finish raises CompressTrainingFailed (nothing registered)."""
    with tempfile.TemporaryDirectory(prefix="cnnray-compress-") as tmp:
        return compress_version(opts.ref, opts.keys, opts.method, Path(tmp), max_acc_drop=opts.max_acc_drop,
                                tolerance=opts.tolerance, alias=opts.alias, threads=opts.threads,
                                repeats=opts.repeats, opts=_method_options(opts), on_line=on_line,
                                command=opts.command())


def compress_loaded(opts: CompressJobOptions, clf: Any, label: str, name: str, *, register: bool,
                    tags: dict[str, str] | None = None, on_line: Callable[[str], None] = print) -> CompressOutcome:
    """`opts` run on a source held in memory (`clf`, an ImageClassifier with channels_last=False, standing for the
    version `label`), in a scratch folder; registered as a version of `name` (with the command and `tags`) only
    if it passes and `register`. CompressTrainingFailed as run_compress."""
    with tempfile.TemporaryDirectory(prefix="cnnray-compress-") as tmp:
        return compress_classifier(clf, label, name, opts.keys, opts.method, Path(tmp),
                                   max_acc_drop=opts.max_acc_drop, tolerance=opts.tolerance, alias=None,
                                   threads=opts.threads, repeats=opts.repeats, opts=_method_options(opts),
                                   on_line=on_line, register=register, command=opts.command(), tags=tags)
