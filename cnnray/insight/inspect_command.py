"""`cnnray inspect` from its options: a registered version's filters, feature maps, CBAM attention and Grad-CAM
as PNGs + summary.json in a folder, each also an artifact (insight/) of the version's run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnray.errors import UserInputError
from cnnray.insight.inspect_options import parse_layers, parse_what
from cnnray.insight.inspect_version import inspect_version


@dataclass(frozen=True)
class InspectOptions:
    """The options of `cnnray inspect` as given; `validate()` before `run_inspect`."""

    model: str  # models:/NAME/VERSION or models:/NAME@ALIAS
    overrides: tuple[str, ...] = ()  # data.* keys, tracking.uri
    out: str | None = None  # default ./cnnray_inspect/NAME-vVERSION
    what: str = "all"  # comma-separated: filters, featuremaps, attention, gradcam, all
    layers: str | None = None  # featuremaps: comma-separated module names
    images: int = 4  # validation images to show

    @cached_property
    def ref(self) -> Any:
        """The parsed --model (a ModelRef); UserInputError for a malformed URI."""
        from cnnray.tracking.uri import parse_model_uri  # deferred: pydantic (cnnray.config), after --help

        return parse_model_uri(self.model)

    @cached_property
    def parts(self) -> tuple[list[str], bool]:
        """(the requested parts, whether attention was named); ValueError for an unknown one."""
        return parse_what(self.what)

    @cached_property
    def layer_names(self) -> list[str] | None:
        """The --layers names (None: the default ones)."""
        return parse_layers(self.layers)

    @cached_property
    def keys(self) -> Any:
        """The data.* / tracking.* keys (CommandKeys), checked against the config schema."""
        from cnnray.serve.options import split_keys  # deferred: torch (cnnray.serve)

        return split_keys(list(self.overrides))

    def validate(self) -> None:
        """UserInputError (exit 2) for bad input, before the version is loaded."""
        if self.ref.run_id:
            raise UserInputError(f"--model {self.model}: inspect takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS), whose run receives the figures")
        try:
            _ = self.parts, self.layer_names
        except ValueError as e:
            raise UserInputError(str(e)) from None
        if self.images < 1:
            raise UserInputError(f"--images {self.images}: at least one image")
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise UserInputError(f"--out {self.out!r} is an existing file, not a folder")
        _ = self.keys


def run_inspect(opts: InspectOptions) -> dict[str, Any]:
    """Draw the figures, log them to the version's run, print where they went; the summary (--json object)."""
    requested, attention_named = opts.parts
    summary = inspect_version(opts.ref, opts.keys.tracking_uri, opts.keys.data, Path(opts.out) if opts.out else None,
                              requested, attention_named, opts.layer_names, opts.images)
    print(f"wrote {len(summary['artifacts'])} files to {summary['out']}; logged to run {summary['run_id']} "
          "under insight/")
    return summary
