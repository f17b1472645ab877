"""Saving and loading trained models: safetensors and JSON only, never a pickle from outside."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from imgcls.jobs import dist
from imgcls.store import runs
from imgcls.vision.models import create_model


def save_model(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a model's weights as safetensors, atomically (the main process only)."""
    if not dist.is_main():
        return
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata or {})
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_run_model(run_id: str, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The best model of a run, rebuilt from its config.json and model.safetensors."""
    config = runs.read_config(run_id)
    path = runs.run_dir(run_id) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"Run '{run_id}' has no saved model yet.")
    model = create_model(config["backbone"], len(config["classes"]), pretrained=False)
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval(), config
