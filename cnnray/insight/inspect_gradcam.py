"""Grad-CAM (captum's LayerGradCam) on the last conv stage, for the predicted and the true class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.insight.figures import _image, _save, plt
from cnnray.insight.inspect_common import class_label, display_image, last_spatial_child


def grad_cam(model: nn.Module, x: Tensor, y: Tensor, layer: str | None = None) -> dict[str, Any]:
    """{'layer', 'pred', 'true', 'prob', 'cam_pred', 'cam_true'}; cams (N, H, W) upsampled to the input, ReLU'd."""
    # deferred (heavy import): captum
    from captum.attr import LayerAttribution, LayerGradCam

    layer = layer or last_spatial_child(model, x)
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), 1)
    pred = probs.argmax(1)
    gc = LayerGradCam(model, dict(model.named_modules())[layer])
    cams = {}
    with torch.enable_grad():
        for key, target in (("cam_pred", pred), ("cam_true", y.long())):
            attr = gc.attribute(x.clone().requires_grad_(True), target=target, relu_attributions=True)
            cams[key] = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), "bilinear")[:, 0]
    return {"layer": layer, "pred": pred, "true": y.long(), "prob": probs, **cams}


def plot_grad_cam(result: dict[str, Any], images: Tensor, classes: tuple[str, ...], path: Path, title: str) -> Path:
    """Rows: images; columns: input, Grad-CAM for the predicted class, Grad-CAM for the true class."""
    n = images.shape[0]
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.2 * n + 1.2), squeeze=False)
    shown = None
    for i in range(n):
        p, t = int(result["pred"][i]), int(result["true"][i])
        prob = result["prob"][i]
        _image(axes[i, 0], display_image(images[i]), f"input {i}: true {class_label(classes, t)}", "gray")
        for j, (key, c, what) in enumerate((("cam_pred", p, "predicted"), ("cam_true", t, "true"))):
            cam = result[key][i]
            cam = cam / cam.max() if float(cam.max()) > 0 else cam  # per map: where, not how much
            _image(axes[i, j + 1], display_image(images[i]),
                   f"{what}: {class_label(classes, c)} (p={float(prob[c]):.2f})", "gray")
            shown = axes[i, j + 1].imshow(cam.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.subplots_adjust(top=0.9 - 0.25 / n)  # room for the two-line title
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, label="Grad-CAM (ReLU, max 1 per map)")
    fig.suptitle(f"{title}\nGrad-CAM on '{result['layer']}': the regions that raise the class score "
                 "(middle: predicted class, right: true class)", fontsize=10)
    return _save(fig, path)


def summarize_grad_cam(result: dict[str, Any], classes: tuple[str, ...]) -> dict[str, Any]:
    """Layer and per-image predicted/true class with probability, for summary.json."""
    rows = []
    for i in range(result["pred"].shape[0]):
        p, t = int(result["pred"][i]), int(result["true"][i])
        rows.append({"image": i, "true": class_label(classes, t), "predicted": class_label(classes, p),
                     "p_predicted": round(float(result["prob"][i, p]), 4),
                     "p_true": round(float(result["prob"][i, t]), 4)})
    return {"layer": result["layer"], "images": rows}
