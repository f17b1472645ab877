"""Inside a CNN: its first-layer filters, what each stage responds to in one image, and the ImageNet guess
of the pretrained backbone that transfer learning starts from."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from imgcls.vision.imgcache import to_tensor
from imgcls.vision.preprocess import Preprocess

# Where each stage sits in timm's EfficientNet family (conv_stem → blocks[0..6] → conv_head):
# block 1 still sees edges and colour blobs at 1/4 resolution, block 3 textures and parts at 1/16,
# block 6 whole-object patterns at 1/32.
STAGES = {"early": 1, "middle": 3, "late": 6}
STAGE_NOTES = {
    "early": "Early layers respond to edges, colour blobs and simple textures, wherever they are in the image.",
    "middle": "Middle layers combine those into textures and parts: fur, stripes, corners, wheels, petals.",
    "late": "Late layers respond to whole objects or large parts of them; these features feed the classifier.",
}
# What a student should compare between the input and its maps, which are shown at the input's size.
STAGE_LOOK = {
    "early": "Put each map beside the photo: it is the photo redrawn by one detector, bright where that "
             "channel's edge or colour is. You can still trace the outline of the object; one channel lights "
             "up its light edges, another its dark ones or one colour.",
    "middle": "The maps are coarser: look for bright patches on textured or detailed parts of the object, and "
              "for the plain background going dark.",
    "late": "Each cell now covers a large part of the photo: a few bright cells mark where the object is, and "
            "which ones depends on what the channel has learned to recognise.",
}
DISPLAY_PERCENTILE = 99.5  # a map is scaled so this share of its pixels is below white: one hot pixel does not
# turn the rest black


def first_layer(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The network's first convolution (the one that looks at raw pixels)."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def filter_grid(model: torch.nn.Module, cell: int = 24, columns: int = 8, gap: int = 2) -> np.ndarray:
    """The first layer's filters as one RGB picture: each k×k×3 kernel scaled to 0–255 and enlarged."""
    w = first_layer(model).weight.detach().float().cpu().numpy()  # out × 3 × k × k
    n = w.shape[0]
    rows = -(-n // columns)
    grid = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 255, dtype=np.uint8)
    for i, kernel in enumerate(w):
        k = kernel.transpose(1, 2, 0)
        span = np.abs(k).max() or 1.0
        # 128 is zero weight: bright where the filter wants that colour, dark where it wants its absence
        rgb = ((k / span) * 127 + 128).clip(0, 255).astype(np.uint8)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        big = np.asarray(Image.fromarray(rgb[..., :3]).resize((cell, cell), Image.Resampling.NEAREST))
        r, c = divmod(i, columns)
        top, left = gap + r * (cell + gap), gap + c * (cell + gap)
        grid[top:top + cell, left:left + cell] = big
    return grid


def prepare(img: Image.Image, dcfg: dict, img_size: int | None = None) -> np.ndarray:
    """An RGB image resized and centre-cropped as the backbone expects (uint8 H×W×3)."""
    return Preprocess.from_data_config(dcfg, img_size).prepare(img)


@torch.no_grad()
def stage_outputs(model: torch.nn.Module, image: np.ndarray, dcfg: dict) -> dict[str, torch.Tensor]:
    """Activations (C×H×W) after the early, middle and late stages for one prepared image."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) <= max(STAGES.values()):
        raise ValueError("Feature maps are shown for EfficientNet-style backbones (with .blocks).")
    caught: dict[str, torch.Tensor] = {}
    hooks = [blocks[i].register_forward_hook(lambda _m, _i, out, s=stage: caught.__setitem__(s, out[0]))
             for stage, i in STAGES.items()]
    try:
        model.eval()
        model.forward_features(to_tensor(image[None], dcfg["mean"], dcfg["std"], "cpu"))
    finally:
        for h in hooks:
            h.remove()
    return caught


def feature_maps(model: torch.nn.Module, image: np.ndarray, dcfg: dict, top: int = 8) -> dict[str, dict]:
    """Per stage, the `top` most active channels as 0–255 maps, with their mean activation and the shape."""
    out = {}
    for stage, act in stage_outputs(model, image, dcfg).items():
        act = act.float().cpu()
        strength = act.clamp(min=0).mean(dim=(1, 2))
        best = torch.argsort(strength, descending=True)[:top]
        maps = []
        for ch in best.tolist():
            m = act[ch].clamp(min=0).numpy()
            peak = float(np.percentile(m, DISPLAY_PERCENTILE)) or float(m.max())
            maps.append((np.clip(m / peak, 0, 1) * 255 if peak > 0 else m).astype(np.uint8))
        out[stage] = {"channels": best.tolist(), "strength": strength[best].tolist(), "maps": maps,
                      "shape": list(act.shape), "note": STAGE_NOTES[stage], "look_for": STAGE_LOOK[stage]}
    return out


def enlarge(m: np.ndarray, side: int, smooth: bool = True) -> np.ndarray:
    """An activation map at side×side pixels, to lie beside the input at its size. Smooth (bilinear) by default:
    blown-up single pixels read as noise; nearest keeps the grid of cells visible."""
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(m).resize((side, side), resample))


@functools.lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class descriptions in index order (shipped with timm, no download)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@torch.no_grad()
def imagenet_top(model: torch.nn.Module, image: np.ndarray, dcfg: dict, k: int = 5) -> list[tuple[str, float]]:
    """What the pretrained backbone with its original 1,000-class ImageNet head sees in a prepared image."""
    model.eval()
    probs = model(to_tensor(image[None], dcfg["mean"], dcfg["std"], "cpu")).float().softmax(1)[0]
    names = imagenet_names()
    if len(probs) != len(names):
        raise ValueError("This model does not have the 1,000-class ImageNet head.")
    values, index = probs.topk(k)
    return [(names[i], float(v)) for v, i in zip(values.tolist(), index.tolist())]
