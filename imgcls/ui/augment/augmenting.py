"""Augment page widgets: the pipeline editor, the seeded preview grid, label safety, save/share."""

from __future__ import annotations

import json

import streamlit as st

from imgcls.augment import preview as augpreview, spec as augspec
from imgcls.augment.pipeline import PRESETS, build_pipeline, load_pipeline, mirrors, pipeline_to_dict
from imgcls.train.config import DEFAULTS
from imgcls.ui.common.text import plain
from imgcls.vision import models

# Session-state keys of this page: small plain values only (the choices are a short list of dicts).
CHOICES = "augment.choices"  # [{"name", "p", "params"}, …] being edited, in the order they run
LOADED = "augment.loaded"  # dataset whose saved pipeline CHOICES started from
SEED = "augment.seed"  # preview seed; "Re-sample" changes it
UPLOAD_SEEN = "augment.upload.seen"  # file id of the upload already applied (or refused)
UPLOAD_ERROR = "augment.upload.error"  # (file id, plain message) of a refused upload
MEASURED = "augment.measured"  # {"key": …, "result": …} of the last accuracy measurement
EDITOR_PX = 900  # height of the transforms' scroll box once there are more than three
TILE_PX = 256  # the tiles are shown at most this wide; columns shrink them on narrow screens
VARIABILITY = """
| In your photos the object varies in… | transforms that teach the model not to care |
|---|---|
| size and position in the frame | RandomResizedCrop, Affine (zoom, shift) |
| which way it faces | HorizontalFlip; VerticalFlip and RandomRotate90 only for top-down views |
| camera angle | Affine (rotation, shear), Perspective |
| lighting and exposure | RandomBrightnessContrast, RandomGamma, CLAHE, RandomShadow |
| colour of the light or camera | HueSaturationValue, ColorJitter, ToGray |
| focus, movement, image quality | GaussianBlur, MotionBlur, GaussNoise, ImageCompression, Downscale |
| what covers it, the background | CoarseDropout, RandomResizedCrop |
"""


# --- sizes and the starting pipeline ----------------------------------------------------------------


@st.cache_data(show_spinner=False)
def _data_config(backbone: str) -> dict:
    return models.data_config(backbone)


def model_size() -> tuple[int, dict]:
    """Side the model sees with the Train page's current settings (256 for the default), and its data config."""
    backbone = st.session_state.get("train.backbone") or models.DEFAULT_BACKBONE
    dcfg = _data_config(backbone)
    strategy = st.session_state.get("train.strategy") or "linear"
    size = st.session_state.get("train.img_size") or DEFAULTS.get(strategy, DEFAULTS["linear"])["img_size"]
    return int(size or dcfg["input_size"][-1]), dcfg


@st.cache_data(show_spinner=False)
def _preset_dict(preset: str, size: int, classes: tuple = ()) -> dict:
    return pipeline_to_dict(build_pipeline(preset, size, classes=list(classes)))


def _rounded(pipeline: dict) -> dict:
    """For comparing pipelines: the sliders keep 6 decimals, so 1.3333333333 and 1.333333 are the same."""
    return json.loads(json.dumps(pipeline), parse_float=lambda x: round(float(x), 4))


def preset_choices(preset: str, size: int, classes: tuple = ()) -> list[dict]:
    """A preset as editable choices, fitted to the dataset's classes (no mirror flip for characters)."""
    return augspec.choices_from_pipeline(_preset_dict(preset, size, tuple(classes)))


def _slot(choices: list[dict], i: int) -> str:
    """Widget-key name of the i-th transform: its name, numbered if it appears twice (an uploaded file)."""
    name = choices[i]["name"]
    n = sum(c["name"] == name for c in choices[:i])
    return name if n == 0 else f"{name}#{n + 1}"


def _forget_widgets() -> None:
    """Drop the editor's widget values, so the next run draws them from the choices."""
    prefixes = tuple(f"augment.{name}" for name in augspec.BY_NAME)
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(prefixes)]:
        del st.session_state[key]


def set_choices(choices: list[dict]) -> None:
    """Replace the pipeline being edited (a preset, a reload, an upload)."""
    st.session_state[CHOICES] = [{"name": c["name"], "p": float(c["p"]), "params": dict(c.get("params") or {})}
                                 for c in choices]
    _forget_widgets()


def load_once(dataset: str, size: int, classes: tuple = ()) -> list[dict]:
    """The pipeline being edited: on the first visit (or another dataset), the saved one, else 'light'."""
    if st.session_state.get(LOADED) != dataset or CHOICES not in st.session_state:
        saved = load_pipeline(dataset)
        try:
            choices = augspec.choices_from_pipeline(saved) if saved else preset_choices("light", size, classes)
            augspec.build(choices, size)  # values the sliders can hold (a min above its max is refused)
            set_choices(choices)
        except ValueError as exc:  # edited by hand: a transform this page cannot edit, or a bad value
            st.warning(f"The saved pipeline could not be opened for editing ({plain(exc)}); starting from 'light'.")
            set_choices(preset_choices("light", size, classes))
        st.session_state[LOADED] = dataset
    st.session_state.setdefault(SEED, 0)
    return st.session_state[CHOICES]


# --- the editor ---------------------------------------------------------------------------------------


def _use_preset(preset: str, size: int, classes: tuple) -> None:
    set_choices(preset_choices(preset, size, classes))


def preset_controls(size: int, current: dict | None, classes: tuple = ()) -> None:
    """Buttons that start the pipeline from a preset, and which preset (if any) it is now."""
    st.caption("Start from a preset (it replaces the transforms below):")
    row = st.container(horizontal=True)
    for preset in PRESETS:
        row.button(preset, key=f"augment.preset.{preset}", on_click=_use_preset, args=(preset, size, tuple(classes)),
                   help=f"Replace the pipeline below with the '{preset}' preset.")
    same = [p for p in PRESETS if current and _rounded(_preset_dict(p, size, tuple(classes))) == _rounded(current)]
    st.caption(f"Now: the **{same[0]}** preset." if same else "Now: your own pipeline.")
    if not mirrors(list(classes)):
        st.caption(":material/info: Your classes look like digits or letters, so the presets leave out the mirror "
                   "flip: a mirrored character is no character at all, or another one.")


def _move(i: int, step: int) -> None:
    choices = st.session_state[CHOICES]
    j = i + step
    if 0 <= j < len(choices):
        choices[i], choices[j] = choices[j], choices[i]
        _forget_widgets()  # numbered slots of repeated transforms may swap


def _remove(i: int) -> None:
    st.session_state[CHOICES].pop(i)
    _forget_widgets()


def _add() -> None:
    name = st.session_state.get("augment.add.choice")
    if name in augspec.BY_NAME:
        spec = augspec.BY_NAME[name]
        st.session_state[CHOICES].append({"name": name, "p": spec.p,
                                          "params": {prm.name: prm.default for prm in spec.params}})


def _slider(key: str, label: str, low, high, step, value, fmt: str, help: str | None = None):
    if key not in st.session_state:
        st.session_state[key] = value
    return st.slider(label, low, high, step=step, key=key, format=fmt, help=help)


def _param_slider(slot: str, prm: augspec.Param, value):
    """One parameter: a two-handle slider for a range (min ≤ max by construction), else one handle."""
    value = augspec.clean_value(prm, value if value is not None else prm.default)
    if prm.integer:
        cast, fmt, low, high, step = int, "%d", int(prm.low), int(prm.high), int(prm.step)
    else:
        cast, low, high, step = float, float(prm.low), float(prm.high), float(prm.step)
        fmt = "%.0f" if step >= 1 else "%.3f" if step < 0.01 else "%.2f"
    value = tuple(cast(v) for v in value) if prm.is_range else cast(value)
    # markdown-safe: augspec's own parameter labels
    out = _slider(f"augment.{slot}.{prm.name}", prm.label, low, high, step, value, fmt)
    return augspec.clean_value(prm, out)


def _transform_controls(choices: list[dict], i: int) -> None:
    choice, slot = choices[i], _slot(choices, i)
    spec = augspec.BY_NAME[choice["name"]]
    with st.container(border=True):
        head = st.container(horizontal=True, vertical_alignment="center")
        head.markdown(f"**{i + 1:d}. {plain(choice['name'])}**", width="stretch")
        head.button("", icon=":material/arrow_upward:", key=f"augment.{slot}.up", disabled=i == 0, type="tertiary",
                    on_click=_move, args=(i, -1), help="Run earlier (transforms run top to bottom)")
        head.button("", icon=":material/arrow_downward:", key=f"augment.{slot}.down", type="tertiary",
                    disabled=i == len(choices) - 1, on_click=_move, args=(i, 1), help="Run later")
        head.button("", icon=":material/close:", key=f"augment.{slot}.remove", on_click=_remove, args=(i,),
                    type="tertiary", help="Remove this transform")
        st.caption(f"{spec.group}: {spec.explain[0].lower()}{spec.explain[1:]}")
        choice["p"] = float(_slider(f"augment.{slot}.p", "Probability (share of images it is applied to)",
                                    0.0, 1.0, 0.05, float(choice["p"]), "%.2f"))
        params = choice.setdefault("params", {})
        for prm in spec.params:
            params[prm.name] = _param_slider(slot, prm, params.get(prm.name))


def _add_label(name: str) -> str:
    return f"{augspec.BY_NAME[name].group} › {name}"


def pipeline_controls(choices: list[dict]) -> None:
    """Every transform with its sliders, in the order they run, and a picker to add one more."""
    if not choices:
        st.info("No transforms: training images are used as they are. Add one below or pick a preset.")
    # a long pipeline scrolls in its own box, so the preview beside it stays in view
    with st.container(height=EDITOR_PX if len(choices) > 3 else "content", border=False):
        for i in range(len(choices)):
            _transform_controls(choices, i)
    used = {c["name"] for c in choices}
    options = [s.name for g in augspec.GROUPS for s in augspec.SPECS if s.group == g and s.name not in used]
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.selectbox("Add a transform", options, key="augment.add.choice", format_func=_add_label,
                  help="Grouped by what they change: geometry, colour, blur and noise, occlusion.")
    row.button("Add", key="augment.add", icon=":material/add:", on_click=_add, disabled=not options)
    pick = st.session_state.get("augment.add.choice")
    if pick in augspec.BY_NAME:
        st.caption(augspec.BY_NAME[pick].explain)


def pipeline_dict(choices: list[dict], size: int) -> dict | None:
    """The choices as albumentations' dict; a plain error (and None) when albumentations refuses them."""
    try:
        return augpreview.as_dict(choices, size)
    except ValueError as exc:
        st.error(f"This pipeline cannot be built: {plain(exc)}")
        return None


