"""`cnnray report` from its options: one self-contained HTML page for a registered version, written to a folder
and logged under report/ of its run; with `inspect`, `cnnray inspect` runs first so the page has its figures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnray.errors import UserInputError
from cnnray.insight.inspect_options import PARTS
from cnnray.insight.inspect_version import inspect_version
from cnnray.insight.report_version import report_version


@dataclass(frozen=True)
class ReportOptions:
    """The options of `cnnray report` as given; `validate()` before `run_report`."""

    model: str  # models:/NAME/VERSION or models:/NAME@ALIAS
    overrides: tuple[str, ...] = ()  # tracking.uri; data.* keys for inspect
    out: str | None = None  # output folder (default ./cnnray_report)
    inspect: bool = False  # run `cnnray inspect` (all parts) first
    log: bool = True  # log the page to the version's run

    @cached_property
    def ref(self) -> Any:
        """The parsed --model (a ModelRef); UserInputError for a malformed URI."""
        from cnnray.tracking.uri import parse_model_uri  # deferred: pydantic (cnnray.config), after --help

        return parse_model_uri(self.model)

    @cached_property
    def keys(self) -> Any:
        """The data.* / tracking.* keys (CommandKeys), checked against the config schema."""
        from cnnray.serve.options import split_keys  # deferred: torch (cnnray.serve)

        return split_keys(list(self.overrides))

    def validate(self) -> None:
        """UserInputError (exit 2) for bad input, before MLflow is touched."""
        if self.ref.run_id:
            raise UserInputError(f"--model {self.model}: report takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS)")
        out = Path(self.out) if self.out else None
        if out is not None and out.exists() and not out.is_dir():
            raise UserInputError(f"--out {self.out!r} is an existing file, not a folder")
        if self.keys.data and not self.inspect:
            raise UserInputError(f"{self.keys.data[0]}: data.* keys choose the images of --inspect; add --inspect "
                                 "or leave them out")


def run_report(opts: ReportOptions) -> dict[str, Any]:
    """Inspect first if asked, gather the version's records, write and log the page, print a summary of it;
    the result (--json object)."""
    if opts.inspect:
        summary = inspect_version(opts.ref, opts.keys.tracking_uri, opts.keys.data, None, list(PARTS), False, None, 4)
        print(f"inspect: {len(summary['figures'])} figures logged to run {summary['run_id']} under insight/")
    result = report_version(opts.ref, opts.keys.tracking_uri, Path(opts.out) if opts.out else None, log=opts.log)
    figures = ", ".join(f"{k} {v}" for k, v in result["figures"].items())
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB; figures: {figures}; "
          f"{result['evaluations']} evaluation(s), {result['decisions']} decision(s))")
    for section, why in result["missing"].items():
        print(f"  {section}: {why}")
    if result["artifacts"]:
        print(f"logged to run {result['run_id']} as {result['artifacts'][0]}")
    return result
