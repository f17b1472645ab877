"""Augmentation pipelines, kept as albumentations data so they can be saved, shown and reused."""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np

from imgcls.augment.labelsafety import text_like
from imgcls.ingest import parsing

PRESETS = ("none", "light", "medium", "heavy")


def mirrors(classes: list[str] | None) -> bool:
    """Whether the presets mirror images of these classes: not when they are characters (digits, letters),
    whose mirror image is no character at all, or another one."""
    return not (classes and text_like(list(classes)))


def preset_transforms(preset: str, img_size: int, classes: list[str] | None = None) -> list:
    """The transforms of a named preset, for square inputs of img_size pixels (no mirror flip for classes
    that are characters)."""
    size = (img_size, img_size)
    if preset == "none":
        return []
    light = [A.RandomResizedCrop(size=size, scale=(0.6, 1.0), p=1.0)]
    light += [A.HorizontalFlip(p=0.5)] if mirrors(classes) else []
    if preset == "light":
        return light
    medium = light + [
        A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=20, val_shift_limit=10, p=0.3),
    ]
    if preset == "medium":
        return medium
    if preset == "heavy":
        return medium + [
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
            A.GaussNoise(std_range=(0.02, 0.08), p=0.2),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15),
                            hole_width_range=(0.05, 0.15), p=0.3),
        ]
    raise ValueError(f"Unknown augmentation preset '{preset}': choose one of {', '.join(PRESETS)}, or a JSON file.")


def reseed(pipeline: A.BaseCompose, seed: int) -> A.BaseCompose:
    """Seed a pipeline so that every transform draws from a stream of its own.

    albumentations 2.0.8's Compose.set_random_seed gives each transform the same seed, so transforms with the
    same p fire together: HorizontalFlip and VerticalFlip at p=0.5 give both flips or none, never one.
    """
    pipeline.set_random_seed(seed)
    children = np.random.SeedSequence(int(seed)).spawn(len(pipeline.transforms))
    for transform, child in zip(pipeline.transforms, children):
        sub = int(child.generate_state(1)[0])
        reseed(transform, sub) if isinstance(transform, A.BaseCompose) else transform.set_random_seed(sub)
    return pipeline


def build_pipeline(spec: str | dict, img_size: int, seed: int | None = None,
                   classes: list[str] | None = None) -> A.Compose:
    """A Compose from a preset name (fitted to the classes, if given), a saved albumentations dict, or a path
    to a JSON/YAML file."""
    if isinstance(spec, dict):
        return _from_dict(_resize_crops(spec, img_size), seed)
    if spec in PRESETS:
        pipeline = A.Compose(preset_transforms(spec, img_size, classes))
        return reseed(pipeline, seed) if seed is not None else pipeline
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"Unknown augmentation '{spec}': use none, light, medium, heavy or a pipeline file.")
    try:  # size and nesting capped before the parse; YAML read by the safe loader
        data = parsing.load_structured(parsing.read_file(path, parsing.MAX_PIPELINE_BYTES, "pipeline file"),
                                       path.name)
    except OSError as exc:
        raise ValueError(f"{path.name} cannot be read ({exc.strerror or exc}).") from None
    try:
        loaded = A.from_dict(data)
    except Exception as exc:  # albumentations raises many kinds of errors on a malformed file
        raise ValueError(f"{path.name} is not a valid augmentation pipeline ({exc}).")
    return _from_dict(_resize_crops(A.to_dict(loaded), img_size), seed)


def _resize_crops(data: dict, img_size: int) -> dict:
    """Saved crops keep the size they were saved at; a run at another size gets crops of its own size."""
    data = json.loads(json.dumps(data))
    for item in data.get("transform", {}).get("transforms", []):
        if item.get("__class_fullname__", "").endswith("RandomResizedCrop"):
            item["size"] = [img_size, img_size]
    return data


def _from_dict(data: dict, seed: int | None) -> A.Compose:
    try:
        pipeline = A.from_dict(data)
    except Exception as exc:
        raise ValueError(f"The augmentation pipeline could not be read ({exc}).")
    if not isinstance(pipeline, A.Compose):
        pipeline = A.Compose([pipeline])
    return reseed(pipeline, seed) if seed is not None else pipeline


def pipeline_to_dict(pipeline: A.Compose) -> dict:
    """The pipeline as albumentations' own serialisable dict (what config.json records)."""
    return json.loads(json.dumps(A.to_dict(pipeline)))


def pipeline_path(dataset: str) -> Path:
    """Where a dataset's chosen augmentation pipeline is kept."""
    from imgcls.store import workspace

    return workspace.dataset_dir(dataset) / "augment.json"


def save_pipeline(dataset: str, pipeline: A.Compose | dict) -> dict:
    """Save the pipeline with the dataset (albumentations JSON, atomically); returns the saved dict."""
    from imgcls.store import workspace

    data = pipeline_to_dict(pipeline) if isinstance(pipeline, A.Compose) else json.loads(json.dumps(pipeline))
    _from_dict(data, None)  # refuse anything albumentations cannot rebuild
    workspace.atomic_write_json(pipeline_path(dataset), data)
    return data


def load_pipeline(dataset: str) -> dict | None:
    """The dataset's saved pipeline, or None when the user has not chosen one."""
    from imgcls.store import workspace

    return workspace.read_json(pipeline_path(dataset))


def resolve_augment(spec: str | dict, dataset: str) -> str | dict:
    """'saved' means the dataset's saved pipeline, falling back to the light preset."""
    if spec == "saved":
        return load_pipeline(dataset) or "light"
    return spec
