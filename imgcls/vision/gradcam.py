"""Grad-CAM: where in the image the evidence for a class lies, as a heat map over the photo."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from imgcls.vision.imgcache import to_tensor


def gradcam(model: torch.nn.Module, x: torch.Tensor, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Heat map (H×W, 0–1) of the last features' evidence for a class (default: the top one).

    The features' gradients, averaged over space, weight each channel; the weighted sum, clipped at zero,
    shows which places raise the class score (Selvaraju et al., 2017). For a CNN the features are its last
    feature maps; for a vision transformer, the patch tokens entering its last block, on the patch grid.
    """
    heats, indices = gradcam_batch(model, x, None if class_index is None else [class_index])
    return heats[0], indices[0]


def gradcam_batch(model: torch.nn.Module, x: torch.Tensor,
                  class_indices: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Heat maps (N×H×W, each 0–1) of a batch, one class per image (default: each image's top class).

    One forward and one backward pass for the whole batch: in eval mode the images do not interact, so the
    gradient of the sum of the chosen scores is, image by image, the gradient of that image's own score.
    """
    model.eval()
    with torch.no_grad():  # the gradient is taken at the features: no graph through the backbone (half the time)
        feats, score = _features_and_rest(model, x)
    with torch.enable_grad():
        feats = feats.detach().requires_grad_(True)
        logits = score(feats)
        index = logits.argmax(1) if class_indices is None else torch.as_tensor(class_indices, device=logits.device)
        # the gradient at the features only: nothing flows on to (or is left on) the weights, which a model
        # shared by several sessions would otherwise pile up
        grads, = torch.autograd.grad(logits.gather(1, index.view(-1, 1)).sum(), feats)
    acts = feats.detach()
    if acts.ndim == 3:  # tokens: the patch tokens laid out on their grid, as a CNN's maps are
        grads, acts = _patch_maps(model, x, grads), _patch_maps(model, x, acts)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), cam)
    return cam.cpu().numpy(), [int(i) for i in index.tolist()]


def _features_and_rest(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Callable]:
    """The features Grad-CAM weighs (N×C×H×W maps, or N×tokens×C), and the rest of the network that turns
    them into class scores."""
    if getattr(model, "num_prefix_tokens", None) is None:  # a CNN: its last feature maps, then its head
        return model.forward_features(x), model.forward_head
    # A vision transformer. Its head reads the class token only, and the final norm works token by token, so
    # the class score has no gradient at all at the patch tokens of the last block's output: that map would be
    # blank. One block earlier the last block's attention still carries the score back to every patch token:
    # those tokens are the features, and that block, the final norm and the head are the rest. (Taken from
    # timm's forward_intermediates rather than a hook, which would also catch another session's pass through
    # the same shared model.)
    _check_input_size(model, x)
    last = model.blocks[-1]
    (patches, prefix), = model.forward_intermediates(x, indices=[len(model.blocks) - 2], return_prefix_tokens=True,
                                                     stop_early=True, output_fmt="NLC", intermediates_only=True)
    # the sequence as the last block takes it: class and register tokens first, then the patches row by row
    return torch.cat([prefix, patches], dim=1), lambda tokens: model.forward_head(model.norm(last(tokens)))


def _check_input_size(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Refuse, in words, an input size a fixed-size transformer was not built for."""
    embed = model.patch_embed
    fixed = getattr(embed, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False)
    if fixed and tuple(x.shape[-2:]) != tuple(embed.img_size):
        raise ValueError(f"This vision transformer takes {embed.img_size[0]}×{embed.img_size[1]} pixel images only, "
                         f"not {x.shape[-2]}×{x.shape[-1]}.")


def _patch_maps(model: torch.nn.Module, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Patch tokens (N×tokens×C, class and register tokens first) as N×C×rows×columns maps of the patch grid."""
    rows, cols = model.patch_embed.dynamic_feat_size(tuple(x.shape[-2:]))  # this input's grid, fixed size or not
    patches = tokens[:, model.num_prefix_tokens:]
    if patches.shape[1] != rows * cols:
        raise ValueError(f"{patches.shape[1]} patch tokens do not fill the {rows}×{cols} grid of this input.")
    # timm lays the patches out row by row, as flatten() of the patch embedding's N×C×rows×columns output
    return patches.transpose(1, 2).reshape(len(tokens), -1, rows, cols)


def colourise(heat: np.ndarray) -> np.ndarray:
    """A blue → green → yellow → red palette for a 0–1 map, as uint8 RGB."""
    stops = np.array([[0, 0, 130], [0, 120, 255], [0, 220, 120], [255, 230, 0], [230, 20, 20]], dtype=np.float64)
    pos = np.clip(heat, 0, 1) * (len(stops) - 1)
    low = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - low)[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).astype(np.uint8)


def colour_bar(width: int = 256, height: int = 14) -> np.ndarray:
    """The palette as a horizontal bar, left (0: no evidence) to right (1: the most), for a legend."""
    return np.repeat(colourise(np.linspace(0.0, 1.0, width))[None], height, axis=0)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map blended over the image the model saw (both H×W)."""
    return (image.astype(np.float64) * (1 - alpha) + colourise(heat) * alpha).round().clip(0, 255).astype(np.uint8)


def explain(model: torch.nn.Module, image: np.ndarray, config: dict, class_index: int | None = None) -> dict:
    """Grad-CAM of a prepared image (uint8, the model's input size): heat map, overlay and class."""
    return explain_batch(model, image[None], config, None if class_index is None else [class_index])[0]


def explain_batch(model: torch.nn.Module, images: np.ndarray, config: dict,
                  class_indices: list[int] | None = None) -> list[dict]:
    """Grad-CAM of prepared images (N×size×size×3 uint8) in one pass: heat map, overlay and class of each."""
    dcfg = config["data_config"]
    device = next(model.parameters()).device
    heats, indices = gradcam_batch(model, to_tensor(images, dcfg["mean"], dcfg["std"], device), class_indices)
    classes = config.get("classes")
    return [{"heat": h, "overlay": overlay(img, h), "class_index": i, "class": classes[i] if classes else i}
            for img, h, i in zip(images, heats, indices)]
