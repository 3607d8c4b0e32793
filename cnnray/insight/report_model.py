"""What a version's HTML report shows, as plain data: the tracking side fills it, `report_html` renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Figure:
    """A PNG shown in the report, with the artifact it came from."""

    title: str
    png: bytes
    source: str = ""  # e.g. "run 1a2b.../insight/gradcam.png"

    def __post_init__(self) -> None:
        # Only real PNGs are inlined: the page's image policy allows data: URIs and nothing else.
        if not self.png.startswith(PNG_MAGIC):
            raise ValueError(f"{self.title}: not a PNG ({self.source or 'no source'})")


@dataclass
class Evaluation:
    """One `cnnray evaluate` run of the version."""

    run_id: str
    run_name: str
    time: str
    params: dict[str, str]
    metrics: dict[str, float]
    per_class: list[dict[str, str]] = field(default_factory=list)  # rows of its per_class.csv
    figures: list[Figure] = field(default_factory=list)


@dataclass
class VersionReport:
    """Everything known about one registered version; missing parts are None/empty and explained in `notes`."""

    label: str  # models:/NAME/VERSION
    name: str
    version: str
    aliases: list[str]
    created: str
    description: str
    architecture: str
    class_names: list[str]
    lineage: dict[str, str]  # config hash, data fingerprint, git commit, package versions, the run
    version_metrics: dict[str, str] = field(default_factory=dict)  # best-epoch metrics tagged on the version
    chain: list[dict[str, str]] = field(default_factory=list)  # compressed from ...: {"version", "method", "note"}
    compression: dict[str, str] = field(default_factory=dict)  # cnnray.compress.* evidence
    cost: dict[str, str] = field(default_factory=dict)  # what training (and the search, when tagged) cost
    training: dict[str, Any] | None = None  # run id, name, status, start, end, best epoch
    params: dict[str, str] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    confusion: list[list[int]] | None = None
    per_class_text: str | None = None  # the run's per_class_report.txt when no matrix was logged
    training_figures: list[Figure] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # promotion_decision.json records, oldest first
    insight_figures: list[Figure] = field(default_factory=list)
    insight_summary: dict[str, Any] | None = None
    tune: dict[str, Any] | None = None  # parent run id, name, params, metrics, trials table
    tune_figures: list[Figure] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is empty and how to fill it
    generated: str = ""
