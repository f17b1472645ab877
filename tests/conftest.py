"""Shared fixtures: a fresh IMGCLS_HOME per test, and small generated images and archives."""

from __future__ import annotations

import io
import struct
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def machine_cache(tmp_path_factory) -> Path:
    """Converted public networks (vision.engine) go to a folder of this test session, not the user's cache."""
    import os

    path = tmp_path_factory.mktemp("machine-cache")
    old = os.environ.get("IMGCLS_CACHE_HOME")
    os.environ["IMGCLS_CACHE_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IMGCLS_CACHE_HOME", None)
    else:
        os.environ["IMGCLS_CACHE_HOME"] = old


@pytest.fixture
def plain_torch(monkeypatch):
    """Every network runs in plain PyTorch (vision.engine): for tests that count PyTorch's own calls, which a
    network converted earlier in the session would otherwise skip."""
    from imgcls.vision import engine

    monkeypatch.setenv(engine.ENV, "torch")
    engine.available.cache_clear()
    yield
    engine.available.cache_clear()  # read again, after the setting is undone


@pytest.fixture
def imgcls_home(tmp_path, monkeypatch) -> Path:
    """Point IMGCLS_HOME at an empty folder of this test's own."""
    home = tmp_path / "home"
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    return home


@pytest.fixture
def app_home(tmp_path, monkeypatch) -> Path:
    """For AppTests: an IMGCLS_HOME of the test's own, the app's serializable-state rule on, and no
    background job left running afterwards."""
    from streamlit import config

    from imgcls.train import runjobs

    home = tmp_path / "ws"
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    # config.toml is read from the working directory; set the rule here so tests enforce it anywhere
    old = config.get_option("runner.enforceSerializableSessionState")
    config.set_option("runner.enforceSerializableSessionState", True)
    # a crash in a page must fail the test's `assert not at.exception`, not turn into the visitor's sentence
    details = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    yield home
    config.set_option("runner.enforceSerializableSessionState", old)
    config.set_option("client.showErrorDetails", details)
    for run_id in runjobs.active_runs():
        runjobs.stop(run_id)


# --- generated inputs -------------------------------------------------------------------------


def noise(seed: int, size=(32, 32), mode: str = "RGB") -> Image.Image:
    """A small image of random pixels: every seed gives different content (so no duplicates)."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)


def solid(color, size=(32, 32), mode: str = "RGB") -> Image.Image:
    """A single-colour image."""
    return Image.new(mode, size, color)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """Image → file bytes in the given format."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(seed: int, size=(32, 32)) -> bytes:
    """A unique small PNG."""
    return encode(noise(seed, size), "PNG")


def jpeg(seed: int, size=(32, 32)) -> bytes:
    """A unique small JPEG."""
    return encode(noise(seed, size), "JPEG", quality=90)


def make_zip(members, path: Path | None = None, compression=zipfile.ZIP_DEFLATED):
    """Build a ZIP from (name, bytes) pairs or (ZipInfo, bytes) pairs; bytes, or written to path."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)  # name may be a str or a prepared ZipInfo
    raw = buf.getvalue()
    if path is None:
        return raw
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(raw)
    return Path(path)


def class_members(classes: dict[str, int], prefix: str = "", start: int = 0, ext: str = "png"):
    """(name, bytes) pairs of unique images: {'cats': 3} → prefix+'cats/000.png' …"""
    out, seed = [], start
    for label, n in classes.items():
        for i in range(n):
            data = png(seed) if ext == "png" else jpeg(seed)
            out.append((f"{prefix}{label}/{i:03d}.{ext}", data))
            seed += 1
    return out


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels (a decompression bomb in miniature)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def workspace_entries(home: Path) -> list[str]:
    """Everything directly under the datasets folder (staging folders included), sorted."""
    folder = Path(home) / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def mk():
    """The helpers above, as one namespace."""
    return types.SimpleNamespace(
        noise=noise, solid=solid, encode=encode, png=png, jpeg=jpeg, zip=make_zip,
        class_members=class_members, png_claiming_size=png_claiming_size,
        workspace_entries=workspace_entries,
    )


@pytest.fixture
def signin_secrets(tmp_path):
    """Sign-in configured as an operator would: an [auth] section in a secrets.toml that Streamlit reads
    (the provider is never contacted by AppTests, which seed st.user themselves)."""
    from authhelpers import signin_configured

    with signin_configured(tmp_path) as path:
        yield path
