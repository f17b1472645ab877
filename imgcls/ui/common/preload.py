"""The machine-learning libraries, imported (and PyTorch warmed up) in the background while nobody waits.

Importing torch, timm and albumentations takes the server seconds, and the first page that needs them
(Augment, Train, Evaluate, Learn) would otherwise wait for it; so would the first pass through a model.
A daemon thread does both, one step at a time and only once no page has been drawing for a moment, so it
fills the time a user spends reading the page they opened first instead of slowing it down.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time

# In the order they import each other: the thread then never holds a module that a page's import waits on
# while itself waiting on one that page holds.
MODULES = ("torch", "torchvision", "timm", "albumentations")
QUIET_S = 1.0  # no page drawing for this long: the user is reading

_cond = threading.Condition()
_running = 0  # script runs in progress, over every session of this server
_last_end = 0.0
_thread: threading.Thread | None = None
_import = importlib.import_module


def _wait_quiet() -> None:
    with _cond:
        while True:
            idle = time.monotonic() - _last_end
            if _running == 0 and idle >= QUIET_S:
                return
            _cond.wait(timeout=None if _running else QUIET_S - idle)


def _warm_up() -> None:
    """One forward and backward pass of the default backbone (random weights) on a blank image. PyTorch
    prepares its CPU kernels on first use: a first backward pass takes two seconds, the next a tenth of it,
    in any model of the same shapes. The first Grad-CAM or prediction a page asks for then starts warm."""
    import torch

    from imgcls.vision.models import DEFAULT_BACKBONE, create_model, data_config

    model = create_model(DEFAULT_BACKBONE, 2, pretrained=False).eval()
    image = torch.zeros(1, *data_config(DEFAULT_BACKBONE)["input_size"], requires_grad=True)
    model(image)[0, 0].backward()


def _load() -> None:
    try:
        for name in MODULES:
            _wait_quiet()
            _import(name)
        _wait_quiet()
        _warm_up()
    except Exception:  # noqa: BLE001 - a broken install shows on the page that needs it, in plain words
        return


def start_in_background() -> threading.Thread:
    """Start the background import once per server process; the thread doing it."""
    global _thread
    with _cond:
        if _thread is None:
            _thread = threading.Thread(target=_load, name="imgcls-preload", daemon=True)
            _thread.start()
        return _thread


@contextlib.contextmanager
def page_run():
    """Around a script run: the background import waits while it draws, and starts after the first one."""
    global _running, _last_end
    with _cond:
        _running += 1
    try:
        yield
    finally:
        with _cond:
            _running -= 1
            _last_end = time.monotonic()
            _cond.notify_all()
        start_in_background()
