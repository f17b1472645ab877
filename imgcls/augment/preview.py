"""What a pipeline does to your images: seeded preview tiles with the sampled parameters, and the
pipeline as Python code, YAML, or read back from an uploaded file."""

from __future__ import annotations

import inspect
import json
import re

import albumentations as A
import numpy as np
import yaml

from imgcls.augment import spec as augspec
from imgcls.augment.pipeline import build_pipeline, pipeline_to_dict, reseed
from imgcls.ingest import parsing
from imgcls.vision.imgcache import center_crop
from imgcls.vision.infer import fit_size


def as_dict(pipeline_or_choices, img_size: int) -> dict:
    """A preset name, saved dict, Compose or list of choices, as albumentations' serialisable dict."""
    if isinstance(pipeline_or_choices, A.BaseCompose):
        return pipeline_to_dict(pipeline_or_choices)
    if isinstance(pipeline_or_choices, list):
        return pipeline_to_dict(augspec.build(pipeline_or_choices, img_size))
    return pipeline_to_dict(build_pipeline(pipeline_or_choices, img_size))


def tile_seed(seed: int, image: int, version: int) -> int:
    """The seed of one tile: each tile draws on its own, so more images do not reshuffle the others."""
    return (int(seed) * 1_000_003 + image * 1_009 + version) % 2**32


def preview(images: list[np.ndarray], pipeline_or_choices, img_size: int, k: int, seed: int) -> list[dict]:
    """Each cached square as the model sees it without augmentation, and k versions as training makes them.

    Returns one dict per image: {"original": H×W×3, "augmented": [{"image", "applied": [str, …]}, …]}.
    """
    data = as_dict(pipeline_or_choices, img_size)
    # The same transforms in a ReplayCompose: identical draws, plus a record of what was drawn.
    replay = A.ReplayCompose(A.from_dict(data).transforms)
    out = []
    for i, img in enumerate(images):
        versions = []
        for j in range(k):
            reseed(replay, tile_seed(seed, i, j))
            result = replay(image=img)
            applied = [describe(t) for t in result["replay"]["transforms"] if t.get("applied")]
            versions.append({"image": fit_size(result["image"], img_size), "applied": applied})
        out.append({"original": np.ascontiguousarray(center_crop(img, img_size)), "augmented": versions})
    return out


# --- the parameters a transform drew, in words ------------------------------------------------------


def _affine(p: dict) -> str:
    scale = p.get("scale") or {}
    sx, sy = float(scale.get("x", 1.0)), float(scale.get("y", 1.0))
    parts = [f"rotate {float(p.get('rotate', 0.0)):.1f}°",
             f"scale {sx:.2f}" if abs(sx - sy) < 0.005 else f"scale {sx:.2f}×{sy:.2f}"]
    m, shape = p.get("matrix"), p.get("shape")
    if m is not None and shape is not None:  # shift = where the centre goes, as a share of the size
        h, w = shape[:2]
        c = np.array([w / 2, h / 2])
        dx, dy = np.asarray(m)[:2, :2] @ c + np.asarray(m)[:2, 2] - c
        if max(abs(dx) / w, abs(dy) / h) >= 0.005:
            parts.append(f"shift {round(100 * dx / w):+d}%, {round(100 * dy / h):+d}%")
    return ", ".join(parts)


def _crop(p: dict) -> str:
    x1, y1, x2, y2 = p["crop_coords"]
    h, w = p["shape"][:2]
    return f"{(x2 - x1) * (y2 - y1) / (h * w):.0%} of the area, width/height {(x2 - x1) / max(y2 - y1, 1):.2f}"


_WORDS = {
    "HorizontalFlip": lambda p: "mirrored",
    "VerticalFlip": lambda p: "upside down",
    "RandomRotate90": lambda p: f"rotate {90 * int(p.get('factor', 0))}°",
    "Affine": _affine,
    "RandomResizedCrop": _crop,
    "Perspective": lambda p: "seen from an angle",
    "RandomBrightnessContrast": lambda p: f"contrast ×{p['alpha']:.2f}, brightness {p['beta'] / 255:+.2f}",
    "HueSaturationValue": lambda p: (f"hue {p['hue_shift']:+.0f}, saturation {p['sat_shift']:+.0f}, "
                                     f"lightness {p['val_shift']:+.0f}"),
    "ColorJitter": lambda p: (f"brightness ×{p['brightness']:.2f}, contrast ×{p['contrast']:.2f}, "
                              f"saturation ×{p['saturation']:.2f}, hue {p['hue']:+.3f}"),
    "ToGray": lambda p: "grey",
    "RandomGamma": lambda p: f"gamma {p['gamma']:.2f}",
    "CLAHE": lambda p: f"strength {p['clip_limit']:.1f}",
    "Sharpen": lambda p: f"strength {p['alpha']:.2f}",
    "GaussianBlur": lambda p: f"kernel {len(p['kernel'])} px",
    "MotionBlur": lambda p: f"kernel {len(p['kernel'])} px",
    "GaussNoise": lambda p: f"noise {float(np.std(p['noise_map'])) / 255:.2f}",
    "ImageCompression": lambda p: f"JPEG quality {int(p['quality'])}",
    "Downscale": lambda p: f"scale {p['scale']:.2f}",
    "CoarseDropout": lambda p: f"{len(p['holes'])} patch{'es' if len(p['holes']) != 1 else ''}",
    "RandomShadow": lambda p: f"{len(p['vertices_list'])} shadow{'s' if len(p['vertices_list']) != 1 else ''}",
}


def describe(replayed: dict) -> str:
    """One applied transform from a ReplayCompose record, e.g. 'Affine: rotate 7.3°, scale 1.04'."""
    name = replayed["__class_fullname__"].split(".")[-1]
    words = _WORDS.get(name)
    try:
        detail = words(replayed.get("params") or {}) if words else ""
    except (KeyError, TypeError, ValueError, IndexError):  # a parameter renamed in another version
        detail = ""
    return f"{name}: {detail}" if detail else name


# --- the pipeline as code, YAML, and from a file ----------------------------------------------------


def _plain(value):
    """JSON values as Python literals: lists become tuples, a per-axis dict with equal axes one range."""
    if isinstance(value, dict):
        if set(value) == {"x", "y"} and value["x"] == value["y"]:
            return _plain(value["x"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def _kwargs(item: dict) -> dict:
    """The arguments of one transform that the page edits or that differ from their defaults, plus p."""
    name = item["__class_fullname__"].split(".")[-1]
    cls = getattr(A, name)
    edited = {prm.name for prm in augspec.BY_NAME[name].params} if name in augspec.BY_NAME else set()
    defaults = {name: prm.default for name, prm in inspect.signature(cls.__init__).parameters.items()
                if prm.default is not inspect.Parameter.empty}
    out = {}
    for key, value in item.items():
        if key in ("__class_fullname__", "p") or key not in inspect.signature(cls.__init__).parameters:
            continue
        if key in defaults and key not in edited and _same(value, defaults[key]):
            continue
        out[key] = _plain(value)
    out["p"] = item.get("p", 1.0)
    return out


def _same(value, default) -> bool:
    """Equal as JSON, with 0 and 0.0 the same number."""
    def norm(v):
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    try:
        return norm(_plain(json.loads(json.dumps(value)))) == norm(_plain(json.loads(json.dumps(default))))
    except (TypeError, ValueError):
        return False


def to_python(pipeline_dict: dict) -> str:
    """Runnable albumentations code that rebuilds the pipeline (the variable `pipeline`)."""
    items = pipeline_dict.get("transform", pipeline_dict).get("transforms", [])
    lines = []
    for item in items:
        name = item["__class_fullname__"].split(".")[-1]
        args = [f"{k}={v!r}" for k, v in _kwargs(item).items()]
        line = f"    A.{name}({', '.join(args)}),"
        lines.append(line if len(line) <= 100 else f"    A.{name}(\n" + "".join(f"        {a},\n" for a in args) + "    ),")
    body = "\n".join(lines)
    return ("# Augmentation pipeline made with imgcls (albumentations " + A.__version__ + ").\n"
            "import albumentations as A\n\n"
            "pipeline = A.Compose([\n" + (body + "\n" if body else "") + "])\n"
            "# augmented = pipeline(image=image)['image']  # image: uint8 H×W×3 (RGB)\n")


def to_yaml(pipeline_dict: dict) -> str:
    """The pipeline as albumentations YAML (readable by A.load(path, data_format='yaml'))."""
    return yaml.safe_dump(json.loads(json.dumps(pipeline_dict)), sort_keys=False, allow_unicode=True)


def to_json(pipeline_dict: dict) -> str:
    """The pipeline as albumentations JSON (what the dataset's augment.json holds)."""
    return json.dumps(pipeline_dict, indent=2)


def _plain_error(exc: Exception) -> str:
    """albumentations' own message without pydantic's bookkeeping ('1 validation error for …', '[type=…]')."""
    text = augspec.plain_validation_error(exc)
    text = re.sub(r"\d+ validation errors? for \w+;\s*", "", text)
    text = re.sub(r"\s*\[type=.*?input_type=[^\]]*\]", "", text)
    return re.sub(r"\s*\[type=[^\]]*\]", "", text).replace("; Input", ": Input").replace("; Value error,", ":")


def from_upload(data: bytes, filename: str) -> dict:
    """A pipeline file (albumentations JSON or YAML) as its dict; a plain ValueError if it is not one."""
    loaded = parsing.load_structured(data, filename)  # size and nesting refused before anything is parsed
    if isinstance(loaded, dict) and "transform" not in loaded and "__class_fullname__" in loaded:
        loaded = {"transform": loaded}  # a bare Compose, as some tools write it
    if not (isinstance(loaded, dict) and isinstance(loaded.get("transform"), dict)
            and isinstance(loaded["transform"].get("transforms"), list)):
        raise ValueError(f"{filename} does not describe an augmentation pipeline (no list of transforms).")
    try:
        # only transforms this app can show and edit, with values its sliders can hold
        augspec.build(augspec.choices_from_pipeline(loaded))
        pipeline = A.from_dict(loaded)
    except ValueError as exc:
        raise ValueError(f"{filename}: {_plain_error(exc)}") from None
    except Exception as exc:  # albumentations raises KeyError, TypeError, pydantic errors…
        raise ValueError(f"{filename} is not a valid augmentation pipeline ({_plain_error(exc)}).") from None
    if not isinstance(pipeline, A.Compose):
        raise ValueError(f"{filename} does not describe an augmentation pipeline (no Compose at the top).")
    return pipeline_to_dict(pipeline)
