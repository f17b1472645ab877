"""Inside the network: its first-layer filters, what each stage responds to in one image, and the ImageNet guess
of the pretrained backbone that transfer learning starts from."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from imgcls.vision.imgcache import to_tensor
from imgcls.vision.preprocess import Preprocess

# Early, middle and late stages are picked from the intermediate outputs timm's `forward_intermediates` gives
# (one per entry of `model.feature_info`): in a CNN by how much each has shrunk the image, the first at 1/4 of
# the input's side (edges and colour blobs), the first at 1/16 (textures and parts), and the last (1/32: whole
# objects); the notes below describe those depths.
STAGE_REDUCTIONS = {"early": 4, "middle": 16}
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
# A vision transformer cuts the image into patches once and keeps that grid to the end: its maps never
# shrink, what grows with depth is how much of the image each patch's vector has gathered through attention.
GRID_NOTE = {
    "early": "A transformer does not shrink its map: every stage keeps the same grid of {patch}×{patch}-pixel "
             "patches, and deeper stages mix into each patch more of what the other patches hold.",
    "middle": "Still the grid of {patch}×{patch}-pixel patches: a transformer does not shrink its map.",
    "late": "Still the grid of {patch}×{patch}-pixel patches, each now informed by the whole image.",
}
GRID_LOOK = {
    "early": "Put each map beside the photo: each cell is one {patch}×{patch}-pixel patch, bright where that "
             "channel's colour or edge is in it. The object's rough outline still shows.",
    "middle": "The grid is the same as before: look for bright patches on textured or detailed parts of the "
              "object, and for the plain background going dark.",
    "late": "Each cell is still one patch, but it now carries what it gathered from the whole photo: a few "
            "bright cells mark where the object is, and which ones depends on what the channel has learned.",
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


def stage_indices(model: torch.nn.Module) -> dict[str, int]:
    """Which of the backbone's intermediate outputs (its `feature_info` entries) are its early, middle and late
    stages."""
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or len(info) < 3 or not hasattr(model, "forward_intermediates"):
        raise ValueError(f"Feature maps need a timm backbone with forward_intermediates and at least three "
                         f"stages; {type(model).__name__} is not one.")
    reductions = [int(f["reduction"]) for f in info]
    last = len(info) - 1
    by_depth = {"early": last // 4, "middle": last // 2, "late": last}
    if len(set(reductions)) == 1:  # one grid all the way (a transformer): stages by depth instead
        return by_depth
    # the first output shrunk at least that much, else the last one
    picks = {stage: next((i for i, r in enumerate(reductions) if r >= want), last)
             for stage, want in STAGE_REDUCTIONS.items()} | {"late": last}
    return picks if len(set(picks.values())) == 3 else by_depth  # three different depths, whatever the sizes


@torch.no_grad()
def stage_outputs(model: torch.nn.Module, image: np.ndarray, dcfg: dict) -> dict[str, torch.Tensor]:
    """Activations (C×H×W) after the early, middle and late stages for one prepared image."""
    stages = stage_indices(model)
    model.eval()
    x = to_tensor(image[None], dcfg["mean"], dcfg["std"], "cpu")
    # NCHW for every backbone: a transformer's patch tokens come back on their grid, its class token left out
    outs = model.forward_intermediates(x, indices=list(stages.values()), intermediates_only=True,
                                       stop_early=True, output_fmt="NCHW")
    return {stage: out[0] for stage, out in zip(stages, outs)}


def stage_notes(model: torch.nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    """What each stage responds to and what to look for in its maps, for this kind of backbone."""
    embed = getattr(model, "patch_embed", None)
    if embed is None or getattr(model, "num_prefix_tokens", None) is None:
        return STAGE_NOTES, STAGE_LOOK
    patch = int(embed.patch_size[0])
    return ({stage: f"{note} {GRID_NOTE[stage].format(patch=patch)}" for stage, note in STAGE_NOTES.items()},
            {stage: look.format(patch=patch) for stage, look in GRID_LOOK.items()})


def feature_maps(model: torch.nn.Module, image: np.ndarray, dcfg: dict, top: int = 8) -> dict[str, dict]:
    """Per stage, the `top` most active channels as 0–255 maps, with their mean activation and the shape."""
    notes, looks = stage_notes(model)
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
                      "shape": list(act.shape), "note": notes[stage], "look_for": looks[stage]}
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
