"""The augmentation transforms we offer, described once as data: widgets, checks and code come from here."""

from __future__ import annotations

from dataclasses import dataclass, field

import albumentations as A


@dataclass(frozen=True)
class Param:
    """One argument of a transform: a number or a (low, high) range within fixed bounds."""

    name: str
    label: str
    low: float
    high: float
    default: float | tuple
    step: float = 0.01
    integer: bool = False
    odd: bool = False  # kernel sizes must be odd

    @property
    def is_range(self) -> bool:
        return isinstance(self.default, tuple)


@dataclass(frozen=True)
class TransformSpec:
    """A transform, its plain explanation, its parameters and what it may do to a label."""

    name: str
    group: str
    explain: str
    params: tuple = ()
    p: float = 0.5
    changes: tuple = ()  # "orientation", "colour", "detail": kinds of class evidence it can destroy
    fixed: dict = field(default_factory=dict)


GROUPS = ("Geometry", "Colour", "Blur and noise", "Occlusion")
SPECS = [
    TransformSpec("HorizontalFlip", "Geometry", "Mirror the image left to right, as if seen from the other side.",
                  p=0.5),
    TransformSpec("VerticalFlip", "Geometry", "Turn the image upside down (only for things with no natural 'up').",
                  p=0.5, changes=("orientation",)),
    TransformSpec("RandomRotate90", "Geometry", "Rotate by a multiple of 90 degrees, for top-down views.",
                  p=0.5, changes=("orientation",)),
    TransformSpec("Affine", "Geometry", "Zoom, shift, tilt and shear a little, as a camera would.", (
        Param("scale", "Zoom (×)", 0.5, 1.5, (0.9, 1.1)),
        Param("translate_percent", "Shift (fraction of the size)", -0.3, 0.3, (-0.05, 0.05)),
        Param("rotate", "Rotation (degrees)", -180, 180, (-15.0, 15.0), step=1.0),
        Param("shear", "Shear (degrees)", -30, 30, (0.0, 0.0), step=1.0),
    ), p=0.5, changes=("orientation",)),
    TransformSpec("RandomResizedCrop", "Geometry", "Cut out a random part of the image and enlarge it: teaches that "
                  "the object can be big or small, centred or not.", (
        Param("scale", "Share of the image kept", 0.05, 1.0, (0.6, 1.0)),
        Param("ratio", "Width/height of the crop", 0.5, 2.0, (0.75, 1.33)),
    ), p=1.0),
    TransformSpec("Perspective", "Geometry", "Look at the image slightly from an angle.", (
        Param("scale", "Strength", 0.0, 0.2, (0.02, 0.06), step=0.005),
    ), p=0.3),
    TransformSpec("RandomBrightnessContrast", "Colour", "Make the photo brighter or darker, flatter or punchier.", (
        Param("brightness_limit", "Brightness change", -0.5, 0.5, (-0.2, 0.2)),
        Param("contrast_limit", "Contrast change", -0.5, 0.5, (-0.2, 0.2)),
    ), p=0.5),
    TransformSpec("HueSaturationValue", "Colour", "Shift the colours, their strength and lightness.", (
        Param("hue_shift_limit", "Hue shift", -90, 90, (-10.0, 10.0), step=1.0, integer=True),
        Param("sat_shift_limit", "Saturation shift", -100, 100, (-20.0, 20.0), step=1.0, integer=True),
        Param("val_shift_limit", "Lightness shift", -100, 100, (-10.0, 10.0), step=1.0, integer=True),
    ), p=0.3, changes=("colour",)),
    TransformSpec("ColorJitter", "Colour", "Jitter brightness, contrast, saturation and hue at once, as different "
                  "cameras and light do.", (
        Param("brightness", "Brightness (×)", 0.0, 2.0, (0.8, 1.2)),
        Param("contrast", "Contrast (×)", 0.0, 2.0, (0.8, 1.2)),
        Param("saturation", "Saturation (×)", 0.0, 2.0, (0.8, 1.2)),
        Param("hue", "Hue shift", -0.5, 0.5, (-0.05, 0.05)),
    ), p=0.3, changes=("colour",)),
    TransformSpec("ToGray", "Colour", "Turn the photo black and white, so the model cannot lean on colour alone.",
                  p=0.1, changes=("colour",)),
    TransformSpec("RandomGamma", "Colour", "Brighten or darken mid-tones, like another exposure setting.", (
        Param("gamma_limit", "Gamma (%)", 40, 200, (80.0, 120.0), step=1.0, integer=True),
    ), p=0.3),
    TransformSpec("CLAHE", "Colour", "Boost local contrast, bringing out detail in shadows and highlights.", (
        Param("clip_limit", "Strength", 1.0, 8.0, (1.0, 4.0), step=0.5),
    ), p=0.2),
    TransformSpec("Sharpen", "Colour", "Sharpen edges, like a phone's camera processing.", (
        Param("alpha", "Strength", 0.0, 1.0, (0.2, 0.5)),
    ), p=0.2),
    TransformSpec("GaussianBlur", "Blur and noise", "Blur slightly, as an out-of-focus photo would.", (
        Param("blur_limit", "Kernel size (pixels)", 3, 15, (3.0, 5.0), step=2.0, integer=True, odd=True),
    ), p=0.2, changes=("detail",)),
    TransformSpec("MotionBlur", "Blur and noise", "Smear the image as if the camera moved.", (
        Param("blur_limit", "Kernel size (pixels)", 3, 21, (3.0, 7.0), step=2.0, integer=True, odd=True),
    ), p=0.2, changes=("detail",)),
    TransformSpec("GaussNoise", "Blur and noise", "Add grain, as a photo taken in low light has.", (
        Param("std_range", "Noise strength", 0.0, 0.5, (0.02, 0.1)),
    ), p=0.2),
    TransformSpec("ImageCompression", "Blur and noise", "Save as a low-quality JPEG, like images shared online.", (
        Param("quality_range", "JPEG quality", 5, 100, (50.0, 95.0), step=1.0, integer=True),
    ), p=0.2),
    TransformSpec("Downscale", "Blur and noise", "Lower the resolution and scale back up, like a small photo.", (
        Param("scale_range", "Scale", 0.1, 0.99, (0.5, 0.9)),
    ), p=0.1, changes=("detail",)),
    TransformSpec("CoarseDropout", "Occlusion", "Cover random patches, so the model looks at the whole object, "
                  "not one telling spot.", (
        Param("num_holes_range", "Number of patches", 1, 10, (1.0, 3.0), step=1.0, integer=True),
        Param("hole_height_range", "Patch height (fraction)", 0.02, 0.5, (0.05, 0.15)),
        Param("hole_width_range", "Patch width (fraction)", 0.02, 0.5, (0.05, 0.15)),
    ), p=0.3),
    TransformSpec("RandomShadow", "Occlusion", "Cast a random shadow over part of the image.", p=0.2),
]
BY_NAME = {s.name: s for s in SPECS}


def clean_value(param: Param, value) -> float | tuple:
    """Coerce a value into its bounds and type; refuses a range whose low end is above its high end."""
    def one(v):
        v = min(max(float(v), param.low), param.high)
        if param.odd:
            v = int(v) if int(v) % 2 else int(v) + 1
        return int(round(v)) if param.integer else round(v, 6)
    if param.is_range:
        low, high = (value, value) if not isinstance(value, (tuple, list)) else value
        if float(low) > float(high):
            raise ValueError(f"{param.label}: the minimum ({low}) is above the maximum ({high}).")
        return (one(low), one(high))
    return one(value)


def make_transform(name: str, params: dict | None = None, p: float | None = None, img_size: int = 224):
    """One albumentations transform from the spec, with values checked against their bounds."""
    if name not in BY_NAME:
        raise ValueError(f"Unknown transform '{name}'.")
    spec = BY_NAME[name]
    kwargs = {prm.name: clean_value(prm, (params or {}).get(prm.name, prm.default)) for prm in spec.params}
    if name == "RandomResizedCrop":
        kwargs["size"] = (img_size, img_size)
    try:
        return getattr(A, name)(p=spec.p if p is None else min(max(float(p), 0.0), 1.0), **kwargs)
    except Exception as exc:  # albumentations validates with pydantic: say what is wrong in plain words
        raise ValueError(f"{name}: {plain_validation_error(exc)}")


def plain_validation_error(exc: Exception) -> str:
    """The first line of an albumentations/pydantic validation error, without the type noise."""
    text = str(exc).strip().splitlines()
    useful = [ln.strip() for ln in text if ln.strip() and not ln.strip().startswith("For further information")]
    return "; ".join(useful[:3]) if useful else type(exc).__name__


def build(choices: list[dict], img_size: int = 224, seed: int | None = None) -> A.Compose:
    """A Compose from [{'name': …, 'p': …, 'params': {…}}, …] in the given order."""
    return A.Compose([make_transform(c["name"], c.get("params"), c.get("p"), img_size) for c in choices], seed=seed)


def choices_from_pipeline(data: dict) -> list[dict]:
    """Read a saved albumentations dict back into editable choices (unknown transforms are refused)."""
    out = []
    for item in data.get("transform", data).get("transforms", []):
        name = item.get("__class_fullname__", "").split(".")[-1]
        if name not in BY_NAME:
            raise ValueError(f"The pipeline uses '{name or '?'}', which this app cannot edit.")
        spec = BY_NAME[name]
        params = {prm.name: _as_value(item.get(prm.name, prm.default)) for prm in spec.params}
        out.append({"name": name, "p": float(item.get("p", spec.p)), "params": params})
    return out


def _as_value(v):
    if isinstance(v, dict):  # Affine stores per-axis ranges {"x": …, "y": …}; we edit both axes as one
        v = v.get("x", next(iter(v.values())))
    return tuple(v) if isinstance(v, list) else v
