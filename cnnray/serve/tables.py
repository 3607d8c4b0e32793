"""Console tables and files of the registry commands (plain text, CSV, JSON)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cnnray.serve.evaluate import EvalResult, per_class_rows

METRIC_LABELS = (("acc", "accuracy"), ("top5", "top-5"), ("loss", "loss"), ("precision_macro", "precision (macro)"),
                 ("recall_macro", "recall (macro)"), ("f1_macro", "F1 (macro)"), ("precision_weighted", "precision (weighted)"),
                 ("recall_weighted", "recall (weighted)"), ("f1_weighted", "F1 (weighted)"))


def metrics_table(res: EvalResult) -> str:
    """One metric per line."""
    return "\n".join(f"  {label:<22} {res.metrics[key]:.4f}" for key, label in METRIC_LABELS)


def per_class_table(res: EvalResult, class_names: tuple[str, ...]) -> str:
    """Precision, recall, F1, support per class."""
    lines = [f"  {'class':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for r in per_class_rows(res.confusion, class_names):
        lines.append(f"  {r['class'][:20]:<20} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:8d}")
    return "\n".join(lines)


def confusion_table(res: EvalResult, class_names: tuple[str, ...], max_classes: int = 20) -> str:
    """Counts, rows = true class, columns = predicted (omitted past max_classes: see the PNG/CSV)."""
    n = len(class_names)
    if n > max_classes:
        return f"  ({n} classes: see confusion_matrix.csv / .png under --out)"
    w = max(5, max(len(c) for c in class_names) + 1, len(str(max(max(r) for r in res.confusion))) + 1)
    head = "  " + " " * w + "".join(f"{c[:w - 1]:>{w}}" for c in class_names)
    rows = ["  " + f"{class_names[i][:w - 1]:>{w}}" + "".join(f"{v:>{w}}" for v in res.confusion[i]) for i in range(n)]
    return "\n".join(["  true \\ predicted", head, *rows])


def write_eval_files(out: Path, res: EvalResult, class_names: tuple[str, ...], summary: dict[str, Any]) -> list[Path]:
    """metrics.json, per_class.csv, confusion_matrix.csv and confusion_matrix.png under `out`."""
    # deferred (heavy import): matplotlib
    from cnnray.tracking.plots import plot_confusion_matrix

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "metrics.json", out / "per_class.csv", out / "confusion_matrix.csv", out / "confusion_matrix.png"]
    files[0].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with open(files[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["class", "precision", "recall", "f1", "support"])
        w.writeheader()
        w.writerows(per_class_rows(res.confusion, class_names))
    with open(files[2], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, res.confusion):
            w.writerow([name, *row])
    plot_confusion_matrix(res.confusion, list(class_names), files[3])
    return files


def predictions_table(rows: list[dict[str, Any]], top_k: int) -> str:
    """One line per image: path, predicted class and confidence, then the runners-up."""
    lines = []
    for r in rows:
        rest = ", ".join(f"{c} {p:.1%}" for c, p in zip(r["top_classes"][1:top_k], r["top_probabilities"][1:top_k]))
        lines.append(f"{r['path']}: {r['class_name']} ({r['probability']:.1%})" + (f"  [then {rest}]" if rest else ""))
    return "\n".join(lines)


def decision_summary(record: dict[str, Any]) -> str:
    """What the gate decided, in a few lines."""
    lines = [f"{record['action']} {record.get('registered_model')}: {record['outcome']}"
             f"{' (dry run: nothing changed)' if record.get('dry_run') else ''}", f"  {record['reason']}"]
    spend = record.get("alpha") or {}
    data = record.get("data") or {}
    if spend.get("decision"):
        lines.append(f"  test set {str(spend['fingerprint'])[:12]}: decision {spend['decision']} of {spend['planned']} at "
                     f"level {spend['level']:.4g}; alpha left {spend['remaining_after']:.4g} of {spend['alpha']:.4g}")
    if record.get("selection_split"):
        lines.append(f"  judged on the selection split {data.get('split')} (--allow-selection-split): tagged "
                     "cnnray.decision_selection_split; no test budget spent")
    if record.get("unverified_champion"):
        lines.append("  the champion records no test set (--allow-unverified-champion): tagged as such")
    after = record.get("aliases_after")
    if after:
        lines.append("  aliases: " + ", ".join(f"@{a} -> v{v}" for a, v in sorted(after.items())))
    if record.get("run_id"):
        lines.append(f"  recorded in run {record['run_id']} (promotion_decision.json) and as version tags")
    return "\n".join(lines)


def registry_table(rows: list[dict[str, Any]]) -> str:
    """Versions, newest first: aliases, the selection metric (val) and the held-out one (test), lineage, decision."""
    head = (f"{'version':>7}  {'aliases':<28} {'val_acc':>7} {'test_acc':>8}  {'cost (device-hours)':<26}  "
            f"{'created (UTC)':<19}  {'data':<12}  {'test set':<12}  {'run':<24}  {'parent':<14}  last decision")
    lines = [head]
    for r in rows:
        acc, test = r.get("val_acc"), r.get("test_acc")
        lines.append(f"{r['version']:>7}  {', '.join('@' + a for a in r['aliases'])[:28]:<28} "
                     f"{(f'{float(acc):.4f}' if acc else '-'):>7} {(f'{float(test):.4f}' if test else '-'):>8}  "
                     f"{cost_cell(r):<26}  {r['created'][:19]:<19}  {r['data_fingerprint'][:12]:<12}  "
                     f"{(r.get('test_fingerprint') or '-')[:12]:<12}  {(r['run_name'] or '-')[:24]:<24}  "
                     f"{_parent(r)[:14]:<14}  {r['decision'] or '-'}")
    lines.append("val_acc: the split each version was selected on; test_acc: held out, measured once after training")
    lines.append("parent: the registered version (NAME/VERSION) or weights file it was initialized from; =V: a "
                 "replay of version V (`cnnray replay --register`) with its verdict")
    lines.append("cost: device-hours of the version's training run (cpu: CPU core-hours, gpu: GPU-hours), = money at "
                 "tracking.price_per_device_hour; search: the whole `cnnray tune` search that chose it")
    return "\n".join(lines)


def _hours(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)[:10]
    return f"{v:.3g}" if v >= 1e-4 or v == 0 else f"{v:.1e}"


def cost_cell(row: dict[str, Any]) -> str:
    """`0.0123 cpu = 0.5 (search 0.09)`: the version's training cost in device-hours, money when priced, and the
    search's when tagged; '-' for a version registered before cost accounting."""
    hours, search = row.get("cost_device_hours"), row.get("search_cost_device_hours")
    cell = f"{_hours(hours)} {row.get('cost_device_kind') or ''}".strip() if hours else "-"
    if hours and row.get("cost_money"):
        cell += f" = {_hours(row['cost_money'])}"
    if search:
        cell += f" (search {_hours(search)}" + (f" = {_hours(row['search_cost_money'])}" if row.get("search_cost_money")
                                                else "") + ")"
    return cell


def _parent(row: dict[str, Any]) -> str:
    """The version this one was initialized from (model.init_from), or the file/torchvision weights, or '-'."""
    if row.get("replay_of"):  # `cnnray replay --register`: the version it rebuilt, and how close it came
        return f"={row['replay_of'].rsplit('/', 1)[-1]} {row.get('replay_verdict') or ''}".strip()
    return row.get("parent") or row.get("init_from") or "-"


def budget_lines(budgets: list[dict[str, Any]]) -> str:
    """The false-promotion budget of each test set: decisions made and alpha left."""
    if not budgets:
        return "promotion budget: no test set recorded yet (versions from before held-out test splits)"
    lines = ["promotion budget per test set (family-wise alpha over its decisions):"]
    for b in budgets:
        mark = "current" if b["current"] else "earlier"
        if b["alpha"] is None:
            lines.append(f"  {b['fingerprint'][:12]} ({mark}): no decision yet; full budget (alpha 0.05 over 20 "
                         "decisions unless the first decision sets --alpha/--decisions)")
            continue
        state = "SPENT: make a new test set" if b["decisions"] >= b["planned"] or b["remaining"] <= 1e-12 else (
            f"next decision at level {b['remaining'] / (b['planned'] - b['decisions']):.4g}")
        lines.append(f"  {b['fingerprint'][:12]} ({mark}): {b['decisions']}/{b['planned']} decisions, alpha left "
                     f"{b['remaining']:.4g} of {b['alpha']:.4g}; {state}")
    return "\n".join(lines)
