"""The one inference path: class probabilities of prepared or cached images, for every caller (validation
during training, evaluation, predictions on new images, the demo, experiments, export goldens)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from imgcls.vision.engine import channels_last as to_channels_last, compiled
from imgcls.vision.imgcache import center_crop, to_tensor


def fit_size(img: np.ndarray, size: int) -> np.ndarray:
    """Bring an image to size×size: centre crop if larger, resize if smaller."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return np.ascontiguousarray(center_crop(img, size))
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


@torch.inference_mode()
def predict_arrays(model, images: np.ndarray, img_size: int, mean, std, device, batch_size: int = 64,
                   autocast=None, channels_last: bool = False, expected: int | None = None) -> np.ndarray:
    """Class probabilities for uint8 images (N×H×W×3): the cached squares centre-cropped to `img_size` (an
    image prepared at that size passes as it is), normalised, no augmentation. `autocast` (a GPU's mixed
    precision) keeps the model in PyTorch; otherwise the fastest correct path for `expected` images in all
    (default: these) runs it (vision.engine)."""
    model.eval()
    fast = None if autocast else compiled(model, "logits", img_size, len(images) if expected is None else expected,
                                          device)
    cl = channels_last or (fast is None and to_channels_last(model))
    out = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(center_crop(images[start:start + batch_size], img_size), mean, std, device, cl)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            out.append((fast or model)(x).float().softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def probabilities(model, images: np.ndarray, pre, device: str = "cpu", batch_size: int = 64,
                  expected: int | None = None) -> np.ndarray:
    """Class probabilities for images prepared or cached the way `pre` (a Preprocess) says; `expected`: how many
    the caller sends in all, a chunk at a time."""
    return predict_arrays(model, images, pre.img_size, pre.mean, pre.std, device, batch_size, expected=expected)
