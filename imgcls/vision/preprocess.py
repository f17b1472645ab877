"""How an image is prepared for a backbone, in one place: weights, input size, cached square, crop, normalising.

Every cache on disk is named from a `Preprocess`: the decoded squares by its side and interpolation, the
backbone features by `feature_key()`. Two parts of the app that agree on one therefore share the decoded
images and the features; a health check and a default linear run embed each image once.

No torch here: the app's pages read cached arrays through this module without a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.vision import imgcache


def weights_id(backbone: str, pretrained: bool = True, seed: int | None = None) -> str:
    """The name feature caches and run configs give a backbone's weights.

    The bundled file's name for the default backbone, "timm:<name>" for downloaded ImageNet weights;
    "random" for a run trained from scratch (its features are never cached), and "random-init-seed<N>" for
    the seeded random weights the experiments compare against.
    """
    from imgcls.vision.models import DEFAULT_BACKBONE, bundled_weights_path

    if not pretrained:
        return "random" if seed is None else f"random-init-seed{seed}"
    return os.path.basename(bundled_weights_path()) if backbone == DEFAULT_BACKBONE else f"timm:{backbone}"


@dataclass(frozen=True)
class Preprocess:
    """One backbone's weights and input size, with the preprocessing its data config prescribes."""

    backbone: str
    weights: str
    img_size: int
    # models.data_config as sorted JSON text: hashable, unchangeable, and exactly what feature keys are made of
    data_json: str

    @classmethod
    def for_backbone(cls, backbone: str, img_size: int | None = None, pretrained: bool = True,
                     seed: int | None = None) -> Preprocess:
        """The backbone's own preprocessing, at `img_size` (default: its native input size)."""
        from imgcls.vision.models import data_config

        dcfg = data_config(backbone)
        size = int(img_size or dcfg["input_size"][-1])
        return cls(backbone, weights_id(backbone, pretrained, seed), size, json.dumps(dcfg, sort_keys=True))

    @classmethod
    def for_run(cls, config: dict) -> Preprocess:
        """The preprocessing a run trained with, from its config.json (or any dict of the same four keys)."""
        # scratch: the one strategy without pretrained weights (train.strategies, which vision may not import)
        weights = config.get("weights") or weights_id(config["backbone"], config.get("strategy") != "scratch")
        return cls(config["backbone"], weights, int(config["img_size"]),
                   json.dumps(config["data_config"], sort_keys=True))

    @classmethod
    def from_data_config(cls, data_config: dict, img_size: int | None = None) -> Preprocess:
        """The preprocessing of a data config at `img_size` (default: its own), for code holding a model but not
        its name: it prepares and caches images, but names no weights, so it caches no features."""
        size = int(img_size or data_config["input_size"][-1])
        return cls("", "", size, json.dumps(data_config, sort_keys=True))

    def as_config(self) -> dict:
        """The four values `for_run` reads back: backbone, weights, img_size, data_config."""
        return {"backbone": self.backbone, "weights": self.weights, "img_size": self.img_size,
                "data_config": self.data_config}

    @property
    def data_config(self) -> dict:
        """The backbone's data config (a fresh dict each time: changing it changes nothing here)."""
        return json.loads(self.data_json)

    @property
    def crop_pct(self) -> float:
        return float(self.data_config["crop_pct"])

    @property
    def interpolation(self) -> str:
        return self.data_config["interpolation"]

    @property
    def mean(self) -> list[float]:
        return self.data_config["mean"]

    @property
    def std(self) -> list[float]:
        return self.data_config["std"]

    @property
    def side(self) -> int:
        """Side of the cached square, resized before the centre crop (256 for 224 at crop 0.875)."""
        return imgcache.cache_size(self.img_size, self.crop_pct)

    def feature_key(self, extra: dict | None = None) -> str:
        """Name of the feature cache of these weights and this preprocessing; `extra` names a change made to
        the images before embedding (an augmentation, a transform), so changed copies get a cache of their own."""
        from imgcls.vision.features import feature_key

        if not self.weights:
            raise ValueError("This preprocessing names no backbone weights, so it has no feature cache.")
        return feature_key(self.backbone, self.weights, {**self.data_config, **(extra or {})}, self.img_size)

    def prepare(self, img) -> np.ndarray:
        """An RGB PIL image as the model sees it: the cached square's resize, then the centre crop."""
        return imgcache.center_crop(imgcache.fit_square(img, self.side, self.interpolation), self.img_size)

    def load_images(self, folder: Path, paths: list[str], hashes: list[str],
                    progress: Callable[[float, str], None] | None = None) -> imgcache.cachestore.RecordView:
        """A dataset's images as cached squares: a lazy N×side×side×3 uint8 view over the decoded store,
        decoding only those not cached yet."""
        return imgcache.load_images(folder, paths, hashes, self.side, self.interpolation, progress=progress)

    def extract(self, model, images, hashes: list[str], device: str = "cpu", extra: dict | None = None,
                progress: Callable[[float, str], None] | None = None) -> np.ndarray:
        """Backbone features of cached squares (an array or a view; N×D float32), embedding only those not in
        the cache yet."""
        from imgcls.vision.features import extract

        return extract(model, images, hashes, self.feature_key(extra), self.data_config, self.img_size, device,
                       progress=progress)
