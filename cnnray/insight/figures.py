"""The explore figures: Gabor simple cells, classic filter feature maps, activation curves and gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402


def _np(data: Any) -> Any:
    # Matplotlib converts tensors through a deprecated __array__ path: hand it numpy arrays.
    return data.detach().cpu().numpy() if hasattr(data, "detach") else data


def _image(ax: Any, data: Any, title: str, cmap: str = "gray", **kwargs: Any) -> Any:
    shown = ax.imshow(_np(data), cmap=cmap, **kwargs)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_gabor(result: dict[str, Any], path: Path) -> Path:
    """Kernels, rectified responses to a grating and to a digit, and the grating's orientation tuning curve."""
    degrees, k = result["orientations_deg"], len(result["orientations_deg"])
    fig = plt.figure(figsize=(2 + 1.3 * k, 9.5))
    grid = GridSpec(4, k + 1, figure=fig, height_ratios=[1, 1, 1, 1.6], hspace=0.45)
    rows = [("kernels", result["kernels"], "RdBu_r"), ("grating", result["grating_maps"], "magma"),
            ("digit", result["digit_maps"], "magma")]
    for r, (label, maps, cmap) in enumerate(rows):
        # One colour scale per row, so the maps of a row compare by brightness.
        vmax = float(maps.abs().max()) or 1.0
        vmin = -vmax if label == "kernels" else 0.0
        for i in range(k):
            _image(fig.add_subplot(grid[r, i + 1]), maps[i], f"{degrees[i]:.1f}°", cmap, vmin=vmin, vmax=vmax)
    ax = fig.add_subplot(grid[0, 0])
    ax.axis("off")
    ax.text(0.5, 0.5, "Gabor kernel\n(red +, blue -)\n\nrows below:\nrectified\nresponse", ha="center", va="center",
            fontsize=8, transform=ax.transAxes)
    _image(fig.add_subplot(grid[1, 0]), result["grating"], f"input: grating\nat {result['true_deg']:.1f}°")
    _image(fig.add_subplot(grid[2, 0]), result["digit"], "input: digit")
    ax = fig.add_subplot(grid[3, :])
    ax.plot(degrees, result["tuning"], marker="o", label="mean rectified response to the grating")
    best = degrees.index(result["preferred_deg"])
    ax.plot([degrees[best]], [result["tuning"][best]], marker="*", ms=16, color="crimson", ls="",
            label=f"preferred: {result['preferred_deg']:.1f}°")
    ax.axvline(result["true_deg"], color="gray", ls="--", label=f"grating orientation: {result['true_deg']:.1f}°")
    ax.set_xlabel("filter orientation theta (degrees; 0° = tuned to vertical stripes)")
    ax.set_ylabel("mean response")
    ax.set_title("Orientation tuning curve of the simulated simple cells")
    ax.set_xticks(degrees)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Gabor simple cells: {k} orientations, wavelength 4 px, half-wave rectified", fontsize=12)
    return _save(fig, path)


def plot_feature_maps(result: dict[str, Any], path: Path, rows: int = 3) -> Path:
    """The 3x3 kernels on top, then each filter's feature map for the first `rows` images of the batch."""
    names, maps, images = result["kernel_names"], result["maps"], result["images"]
    rows = min(rows, maps.shape[0])
    fig, axes = plt.subplots(rows + 1, len(names) + 1, figsize=(1.5 * (len(names) + 1), 1.7 * (rows + 1) + 0.8))
    axes[0, 0].axis("off")
    axes[0, 0].text(0.5, 0.5, "3x3 kernel\n(red +, blue -)", ha="center", va="center", fontsize=8)
    for j, name in enumerate(names):
        kernel = result["kernels"][name]
        vmax = float(kernel.abs().max())
        _image(axes[0, j + 1], kernel, name, "RdBu_r", vmin=-vmax, vmax=vmax)
        for index, value in enumerate(kernel.flatten().tolist()):
            axes[0, j + 1].text(index % 3, index // 3, f"{value:.2g}", ha="center", va="center", fontsize=6)
    for i in range(rows):
        _image(axes[i + 1, 0], images[i, 0], f"input {i}")
        for j, name in enumerate(names):
            fmap = maps[i, j]
            # Derivative filters give signed maps: centre their colour scale on zero.
            if float(fmap.min()) < 0:
                vmax = float(fmap.abs().max()) or 1.0
                _image(axes[i + 1, j + 1], fmap, name, "RdBu_r", vmin=-vmax, vmax=vmax)
            else:
                _image(axes[i + 1, j + 1], fmap, name)
    fig.suptitle(f"Classic filters as feature maps (F.conv2d, padding 1); explicit sliding-window conv matches it to "
                 f"{result['max_abs_diff']:.1e} and is {result['speed_ratio']:.1f}x slower", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_activations(result: dict[str, Any], path: Path) -> Path:
    """f(x) and f'(x) of each activation on a dense grid, and their CPU (and CUDA) throughput."""
    grid, rows = _np(result["grid"]), result["rows"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 5.2))
    for name in result["values"]:
        zero = rows[name]["zero_grad_fraction"]
        left.plot(grid, _np(result["values"][name]), label=name)
        middle.plot(grid, _np(result["grads"][name]), label=f"{name} (zero grad on {100 * zero:.0f}%)")
    left.set(title="activation f(x)", xlabel="x", ylabel="f(x)", ylim=(-1.5, 5.2))
    middle.set(title=f"gradient df/dx (autograd, {result['grid_points']} points)", xlabel="x", ylabel="df/dx",
               ylim=(-0.5, 1.6))
    names = list(rows)
    cpu = [rows[n]["cpu_elements_per_s"] / 1e9 for n in names]
    positions = range(len(names))
    width = 0.4 if result["cuda"] else 0.8
    right.barh([p - (width / 2 if result["cuda"] else 0) for p in positions], cpu, height=width,
               label=f"CPU, {result['threads']} thread(s)")
    if result["cuda"]:
        right.barh([p + width / 2 for p in positions], [rows[n]["cuda_elements_per_s"] / 1e9 for n in names],
                   height=width, label="CUDA")
        right.set_xscale("log")
    right.set_yticks(list(positions), names)
    right.invert_yaxis()
    shape = "x".join(str(s) for s in result["shape"])
    right.set(title=f"throughput on a {shape} tensor (median of {result['repeats']})", xlabel="G elements / s")
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Activations and their gradients (FReLU and PReLU freshly initialized; FReLU is spatial: "
                 "a ramp along one image row, each point also sees its neighbours; its kink at x = -5 is the row's zero "
                 "padding)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
