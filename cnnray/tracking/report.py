"""Per-class precision, recall, F1 and support from a confusion matrix, as a text table."""

from __future__ import annotations


def per_class_report(matrix: list[list[int]], class_names: list[str]) -> str:
    """A fixed-width table, one row per class plus macro and weighted averages."""
    n = len(matrix)
    support = [sum(matrix[i]) for i in range(n)]
    predicted = [sum(matrix[r][i] for r in range(n)) for i in range(n)]
    rows, total = [], sum(support)
    prec, rec, f1 = [], [], []
    for i in range(n):
        tp = matrix[i][i]
        p = tp / predicted[i] if predicted[i] else 0.0
        r = tp / support[i] if support[i] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        prec.append(p), rec.append(r), f1.append(f)
        rows.append(f"{class_names[i][:20]:>20} {p:9.4f} {r:9.4f} {f:9.4f} {support[i]:9d}")
    head = f"{'class':>20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"
    macro = f"{'macro avg':>20} {sum(prec) / n:9.4f} {sum(rec) / n:9.4f} {sum(f1) / n:9.4f} {total:9d}"
    w = [s / total if total else 0.0 for s in support]
    weighted = (f"{'weighted avg':>20} {sum(a * b for a, b in zip(prec, w)):9.4f} "
                f"{sum(a * b for a, b in zip(rec, w)):9.4f} {sum(a * b for a, b in zip(f1, w)):9.4f} {total:9d}")
    return "\n".join([head, *rows, "", macro, weighted]) + "\n"
