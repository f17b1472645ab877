"""Grad-CAM: where in the image the evidence for a class lies, as a heat map over the photo."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .imgcache import to_tensor


def gradcam(model: torch.nn.Module, x: torch.Tensor, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Heat map (H×W, 0–1) of the last convolutional features' evidence for a class (default: the top one).

    The features' gradients, averaged over space, weight each channel; the weighted sum, clipped at zero,
    shows which places raise the class score (Selvaraju et al., 2017).
    """
    model.eval()
    with torch.enable_grad():
        feats = model.forward_features(x).detach().requires_grad_(True)
        logits = model.forward_head(feats)
        index = int(logits[0].argmax()) if class_index is None else int(class_index)
        logits[0, index].backward()
    weights = feats.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feats.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).cpu().numpy(), index


def colourise(heat: np.ndarray) -> np.ndarray:
    """A blue → green → yellow → red palette for a 0–1 map, as uint8 RGB."""
    stops = np.array([[0, 0, 130], [0, 120, 255], [0, 220, 120], [255, 230, 0], [230, 20, 20]], dtype=np.float64)
    pos = np.clip(heat, 0, 1) * (len(stops) - 1)
    low = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - low)[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map blended over the image the model saw (both H×W)."""
    return (image.astype(np.float64) * (1 - alpha) + colourise(heat) * alpha).round().clip(0, 255).astype(np.uint8)


def explain(model: torch.nn.Module, image: np.ndarray, config: dict, class_index: int | None = None) -> dict:
    """Grad-CAM of a prepared image (uint8, the model's input size): heat map, overlay and class."""
    dcfg = config["data_config"]
    device = next(model.parameters()).device
    heat, index = gradcam(model, to_tensor(image[None], dcfg["mean"], dcfg["std"], device), class_index)
    return {"heat": heat, "overlay": overlay(image, heat), "class_index": index,
            "class": config["classes"][index] if "classes" in config else index}
