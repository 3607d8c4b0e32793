"""`cnnray report`'s page on its own: escaping, self-containment, file names, figure checks (no server)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from cnnray.insight.report_html import CSP, render_report
from cnnray.insight.report_model import Evaluation, Figure, VersionReport
from cnnray.insight.report_version import report_file

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _report(**kw) -> VersionReport:
    base = dict(label="models:/m/3", name="m", version="3", aliases=["champion"], created="2026-11-29 10:00:00",
                description=HOSTILE, architecture="resnet18", class_names=["cat", HOSTILE], lineage={"git_commit": HOSTILE},
                version_metrics={"val_acc": "0.9512"}, confusion=[[5, 1], [0, 4]],
                training={"run id": "abc", "status": "FINISHED"}, training_figures=[Figure("curves", _png(), "run abc")],
                evaluations=[Evaluation("e1", "evaluate-m-v3", "2026-11-29", {"split": "val"}, {"acc": 0.9},
                                        [{"class": HOSTILE, "precision": "0.5", "recall": "1.0", "f1": "0.66", "support": "3"}])],
                decisions=[{"seq": 1, "action": "promote", "outcome": "promoted", "candidate_version": "3",
                            "reason": HOSTILE, "comparison": {"delta": 0.01, "ci_low": -0.002, "ci_high": 0.03}}],
                notes={"search": "this version was not produced by `cnnray tune`"})
    base.update(kw)
    return VersionReport(**base)


def test_registry_values_are_escaped_and_the_page_runs_nothing():
    page = render_report(_report())
    assert "<script" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert page.count("&lt;script&gt;") >= 5  # description, class name twice, lineage tag, decision reason
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP and "script-src" not in CSP


def test_the_page_is_self_contained():
    page = render_report(_report())
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs
    assert "http://" not in page and "https://" not in page


def test_sections_say_what_is_missing_and_tables_have_the_numbers():
    page = render_report(_report())
    for section in ("overview", "lineage", "training", "classes", "evaluation", "promotion", "inspect", "search"):
        assert f'<section id="{section}">' in page
    assert "this version was not produced by `cnnray tune`" in page
    assert "0.8333" in page  # cat: precision 5/6 from the confusion matrix
    assert "+0.0100" in page and "[-0.0020, +0.0300]" in page  # the decision's delta and interval


def test_only_png_figures_are_inlined():
    with pytest.raises(ValueError, match="not a PNG"):
        Figure("page", b"<html><script>alert(1)</script></html>", "run x: insight/evil.png")


@pytest.mark.parametrize("name,expected", [("m", "m-v3.html"), ("a b\\c", "a_b_c-v3.html"),
                                           ("..", "model-v3.html"), ("..x", "x-v3.html")])
def test_report_file_stays_in_the_out_folder(tmp_path, name, expected):
    path = report_file(tmp_path, name, "3")
    assert path.parent == tmp_path and path.name == expected


def test_default_out_folder():
    assert report_file(None, "m", "1") == Path("cnnray_report") / "m-v1.html"
