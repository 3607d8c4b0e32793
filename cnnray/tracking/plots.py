"""Matplotlib figures logged as run artifacts: confusion matrix and learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: str | Path,
                          title: str = "confusion matrix (colour: share of the true class; numbers: counts)") -> Path:
    """Row-normalized confusion matrix with counts, saved as PNG."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(4, 0.5 * n + 2)))
    shown = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_learning_curves(history: dict[str, list[tuple[int, float]]], path: str | Path,
                         title: str = "training curves") -> Path:
    """Loss, accuracy and learning rate per epoch in three panels, saved as PNG."""
    panels = [("loss", ["train_loss", "val_loss"], "cross-entropy loss"),
              ("accuracy", ["val_acc", "val_top5"], "validation accuracy (fraction)"),
              ("lr", ["lr"], "learning rate (log scale)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    fig.suptitle(title, fontsize=11)
    for ax, (title, keys, ylabel) in zip(axes, panels):
        for key in keys:
            points = history.get(key) or []
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if title == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_replay_curves(original: dict[str, list[tuple[int, float]]], replay: dict[str, list[tuple[int, float]]],
                       path: str | Path, title: str) -> Path:
    """Per-epoch curves of a version's run and of its replay, one panel per metric, both in each panel."""
    keys = [k for k in ("train_loss", "val_loss", "val_acc") if original.get(k) or replay.get(k)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, series, style in (("original", original, "-o"), ("replay", replay, "--x")):
            pts = series.get(key) or []
            if pts:
                ax.plot([s + 1 for s, _ in pts], [v for _, v in pts], style, label=label, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
