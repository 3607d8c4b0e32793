"""A `VersionReport` as one self-contained HTML page: inline CSS, figures as data: URIs, no script.

Every value from the registry (names, tags, descriptions, class names) is escaped, and the page's
Content-Security-Policy allows nothing but its own inline style and data: images: a hostile tag
value cannot run code or make the page fetch anything.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from cnnray.insight.report_model import Evaluation, Figure, VersionReport
from cnnray.scores import class_scores

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1e0}nav{padding:8px 28px;background:#e8ebf0;position:sticky;top:0}
nav a{margin-right:14px;color:#1d4ed8;text-decoration:none}main{padding:4px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px}td,th{border:1px solid #dde2ea;padding:3px 8px;text-align:left}
th{background:#f0f2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0 18px}figure img{max-width:100%;border:1px solid #dde2ea}
figcaption{color:#555;font-size:12px}.note{color:#6b7280;font-style:italic}pre{background:#f6f7f9;padding:8px;overflow:auto}
.tag{display:inline-block;background:#e0e7ff;border-radius:4px;padding:0 6px;margin-right:4px}
"""
SECTIONS = (("overview", "Overview"), ("lineage", "Lineage"), ("training", "Training"), ("classes", "Per class"),
            ("evaluation", "Evaluation"), ("promotion", "Promotion"), ("inspect", "Inspect"), ("search", "Search"))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, str) and "." in value:  # numbers read back from CSV files and tags
        try:
            value = float(value)
        except ValueError:
            return _e(value)
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.4g}"
    return _e(value)


def _table(head: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{_num(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _pairs(d: dict[str, Any], head: tuple[str, str] = ("key", "value")) -> str:
    return _table(list(head), [[k, v] for k, v in d.items()], numeric_from=1)


def _figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    caption = _e(f.title) + (f" <span class=\"note\">({_e(f.source)})</span>" if f.source else "")
    return f'<figure><img alt="{_e(f.title)}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'


def _note(r: VersionReport, key: str) -> str:
    return f'<p class="note">{_e(r.notes[key])}</p>' if key in r.notes else ""


def _overview(r: VersionReport) -> str:
    facts = {"registered model": r.name, "version": r.version,
             "aliases": ", ".join("@" + a for a in r.aliases) or "(none)", "architecture": r.architecture,
             "classes": f"{len(r.class_names)}: " + ", ".join(r.class_names[:30]) + (" ..." if len(r.class_names) > 30 else ""),
             "created (UTC)": r.created}
    if r.description:
        facts["description"] = r.description
    metrics = (_table(["metric (as registered)", "split", "value"],
                      [[k, _split_label(k), v] for k, v in r.version_metrics.items()]) if r.version_metrics else "")
    cost = (_pairs(r.cost, ("cost (device-hours: CPU core-hours or GPU-hours)", "")) if r.cost else
            '<p class="note">no cost recorded (a version registered before cnnray kept cost accounting)</p>')
    return _pairs(facts, ("", "")) + metrics + cost


def _split_label(metric: str) -> str:
    """Which split a version metric was measured on, and what that split was used for."""
    if metric.startswith("test_"):
        return "test: held out, measured once after training"
    if metric.startswith("val_"):
        return "val: selection (best epoch, weights, early stopping, Tune's winner)"
    return ""


def _lineage(r: VersionReport) -> str:
    out = _pairs(r.lineage, ("lineage tag", "value")) if r.lineage else ""
    if r.chain:
        out += "<h3>Derived from</h3>" + _table(["version", "method", "how"],
                                                 [[c["version"], c.get("method", ""), c.get("note", "")] for c in r.chain], 9)
    if r.compression:
        out += "<h3>Compression evidence</h3>" + _pairs(r.compression, ("cnnray.compress.*", "value"))
    return out + _note(r, "lineage")


def _training(r: VersionReport) -> str:
    if r.training is None:
        return _note(r, "training")
    out = _pairs(r.training, ("run", ""))
    out += "".join(_figure(f) for f in r.training_figures)
    if r.final_metrics:
        out += "<h3>Last logged metrics</h3>" + _table(["metric", "value"], [[k, v] for k, v in sorted(r.final_metrics.items())])
    if r.params:
        out += (f"<details><summary>Resolved config ({len(r.params)} keys)</summary>"
                + _pairs(dict(sorted(r.params.items())), ("key", "value")) + "</details>")
    return out + _note(r, "training")


def _per_class_rows(confusion: list[list[int]], names: list[str]) -> list[list[Any]]:
    s = class_scores(confusion)
    rows = []
    for i in range(len(s.support)):
        name = names[i] if i < len(names) else str(i)
        rows.append([name, float(s.precision[i]), float(s.recall[i]), float(s.f1[i]), int(s.support[i])]
                    if s.seen[i] else [name, "-", "-", "-", int(s.support[i])])
    total = int(s.support.sum())
    rows.append(["macro avg", s.macro["precision"], s.macro["recall"], s.macro["f1"], total])
    rows.append(["accuracy", "", "", s.accuracy, total])
    return rows


def _classes(r: VersionReport) -> str:
    if r.confusion:
        return ("<p>Best epoch's validation set (rows of the matrix = true class).</p>"
                + _table(["class", "precision", "recall", "F1", "support"], _per_class_rows(r.confusion, r.class_names)))
    if r.per_class_text:
        return f"<pre>{_e(r.per_class_text)}</pre>"
    return _note(r, "classes")


def _evaluation(ev: Evaluation) -> str:
    head = f"<h3>{_e(ev.run_name)} <span class=\"note\">run {_e(ev.run_id)}, {_e(ev.time)}</span></h3>"
    data = {k: v for k, v in ev.params.items() if k in ("split", "data.source", "data.path", "images", "model")}
    out = head + (_pairs(data, ("evaluated on", "")) if data else "")
    out += _table(["metric", "value"], [[k, v] for k, v in sorted(ev.metrics.items())])
    if ev.per_class:
        cols = list(ev.per_class[0])
        out += _table(cols, [[row.get(c, "") for c in cols] for row in ev.per_class])
    return out + "".join(_figure(f) for f in ev.figures)


def _decisions(r: VersionReport) -> str:
    if not r.decisions:
        return _note(r, "promotion")
    rows = []
    for d in r.decisions:
        c = d.get("comparison") or {}
        ci = f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]" if "ci_low" in c and "ci_high" in c else ""
        rows.append([d.get("seq", ""), d.get("time", ""), d.get("action", ""), d.get("outcome", ""),
                     f"v{d.get('candidate_version')}", f"v{d['champion_version']}" if d.get("champion_version") else "-",
                     f"{c['delta']:+.4f}" if isinstance(c.get("delta"), float) else "", ci,
                     ", ".join(f"@{a}->v{v}" for a, v in sorted((d.get("aliases_after") or {}).items())),
                     d.get("reason", "")])
    return _table(["#", "time", "action", "outcome", "candidate", "champion then", "delta", "95% CI",
                   "aliases after", "reason"], rows, numeric_from=99)


def _inspect(r: VersionReport) -> str:
    out = "".join(_figure(f) for f in r.insight_figures)
    s = r.insight_summary or {}
    matches = (s.get("filters") or {}).get("matches")
    if matches:
        keys = [k for k in matches[0] if not isinstance(matches[0][k], (list, dict))]
        out += ("<details><summary>Learned filters' best-matching Gabor filters</summary>"
                + _table(keys, [[m.get(k, "") for k in keys] for m in matches]) + "</details>")
    return (out or "") + _note(r, "inspect")


def _search(r: VersionReport) -> str:
    if r.tune is None:
        return _note(r, "search")
    t = dict(r.tune)
    trials = t.pop("trials_text", None)
    out = _pairs({k: v for k, v in t.items() if not isinstance(v, dict)}, ("search", ""))
    search_cost = {k: v for k, v in r.cost.items() if k.startswith("search ")}
    if search_cost:
        out += _pairs(search_cost, ("what the search cost", ""))
    if t.get("metrics"):
        out += _table(["search metric", "value"], [[k, v] for k, v in sorted(t["metrics"].items())])
    out += "".join(_figure(f) for f in r.tune_figures)
    if trials:
        out += f"<h3>Trials, best first</h3><pre>{_e(trials)}</pre>"
    return out + _note(r, "search")


def render_report(r: VersionReport) -> str:
    """The whole page as a string."""
    bodies = {"overview": _overview(r), "lineage": _lineage(r), "training": _training(r), "classes": _classes(r),
              "evaluation": "".join(_evaluation(ev) for ev in r.evaluations) + _note(r, "evaluation"),
              "promotion": _decisions(r), "inspect": _inspect(r), "search": _search(r)}
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{bodies[key]}</section>' for key, title in SECTIONS)
    title = f"cnnray report: {r.label}"
    meta = json.dumps({"model": r.label, "generated": r.generated})
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f'<meta name="cnnray-report" content="{_e(meta)}"><style>{STYLE}</style></head><body>'
            f"<header><h1>{_e(title)}</h1><p>{_e(r.architecture)} · generated {_e(r.generated)} by cnnray report</p>"
            f"</header><nav>{nav}</nav><main>{sections}</main></body></html>\n")
