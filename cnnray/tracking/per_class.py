"""Per-class precision, recall, F1 and support from a confusion matrix, as a text table."""

from __future__ import annotations

from cnnray.scores import class_scores


def per_class_report(matrix: list[list[int]], class_names: list[str]) -> str:
    """A fixed-width table like sklearn's classification_report: a row per class, accuracy, macro and weighted.

    The numbers are `cnnray.scores.class_scores`, the ones logged as val_*_macro/weighted: a class
    neither labelled nor predicted shows '-' and is left out of the macro average.
    """
    s = class_scores(matrix)
    total = int(s.support.sum())
    head = f"{'class':>20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"
    rows = []
    for i in range(len(s.support)):
        name = class_names[i] if i < len(class_names) else str(i)
        if s.seen[i]:
            rows.append(f"{name[:20]:>20} {s.precision[i]:9.4f} {s.recall[i]:9.4f} {s.f1[i]:9.4f} {s.support[i]:9d}")
        else:
            rows.append(f"{name[:20]:>20} {'-':>9} {'-':>9} {'-':>9} {s.support[i]:9d}")
    m, w = s.macro, s.weighted
    summary = [
        f"{'accuracy':>20} {'':>9} {'':>9} {s.accuracy:9.4f} {total:9d}",
        f"{'macro avg':>20} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {total:9d}",
        f"{'weighted avg':>20} {w['precision']:9.4f} {w['recall']:9.4f} {w['f1']:9.4f} {total:9d}",
    ]
    note = (f"macro avg over the {int(s.seen.sum())} of {len(s.support)} classes present in the labels or "
            "predictions (sklearn's default); undefined ratios count as 0")
    return "\n".join([head, *rows, "", *summary, "", note]) + "\n"
