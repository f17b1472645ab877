"""Can a transform change the class? Rules of thumb from the class names and colours, and a measurement:
a linear probe on clean backbone features scores augmented validation images, transform by transform."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from imgcls.augment import spec as augspec

MIRROR_PAIRS = (("b", "d"), ("p", "q"))  # letters that a left-right mirror turns into each other
TURN_PAIRS = (("6", "9"), ("2", "5"), ("m", "w"), ("n", "u"), ("b", "q"), ("d", "p"), ("M", "W"))
ROTATE_LIMIT = 30.0  # degrees: past this a 6 starts to pass for a 9, an arrow for another direction
COLOUR_APART = 0.25  # distance between classes' mean colour vectors (saturation × hue direction, 0…2)
SATURATED = 0.15  # a class whose mean colour vector is shorter than this has no telling hue
VAL_BUDGET = 50  # validation images embedded per transform: ~2.5 s each on two CPU cores


def text_like(classes: list[str]) -> bool:
    """Classes named by single characters or numbers ('0'…'9', 'a'…'z'): digits, letters, symbols."""
    names = [str(c).strip() for c in classes]
    return len(names) >= 2 and sum(len(n) == 1 or n.isdigit() for n in names) >= 0.8 * len(names)


def _pairs(classes: list[str], pairs) -> list[str]:
    have = {str(c).strip() for c in classes}
    return [f"'{a}' and '{b}'" for a, b in pairs if a in have and b in have]


def _max_abs(params: dict, name: str, default=0.0) -> float:
    value = (params or {}).get(name, default)
    values = value if isinstance(value, (tuple, list)) else (value,)
    return max(abs(float(v)) for v in values)


def _spec_params(choice: dict) -> dict:
    spec = augspec.BY_NAME[choice["name"]]
    return {prm.name: (choice.get("params") or {}).get(prm.name, prm.default) for prm in spec.params}


def orientation_warnings(choices: list[dict], classes: list[str]) -> list[str]:
    """Flips and large rotations on classes told apart by their orientation (digits, letters)."""
    if not text_like(classes):
        return []
    turned = _pairs(classes, TURN_PAIRS)
    example = f" (here {', '.join(turned)})" if turned else " (a 6 and a 9, an n and a u)"
    out = []
    for choice in choices:
        name, params = choice["name"], _spec_params(choice)
        if name == "VerticalFlip":
            out.append(f"**VerticalFlip** turns images upside down. Your classes look like digits or letters, "
                       f"where upside down can be another class{example}: the label would be wrong. Remove it.")
        elif name == "RandomRotate90":
            out.append(f"**RandomRotate90** turns images by 90° or 180°. Your classes look like digits or letters, "
                       f"where a turned character can read as another{example}. Remove it.")
        elif name == "Affine" and _max_abs(params, "rotate") > ROTATE_LIMIT:
            out.append(f"**Affine** rotates by up to {_max_abs(params, 'rotate'):.0f}°. Your classes look like digits "
                       f"or letters{example}: keep the rotation within ±{ROTATE_LIMIT:.0f}°.")
        elif name == "HorizontalFlip" and _pairs(classes, MIRROR_PAIRS):
            out.append(f"**HorizontalFlip** mirrors images, and {', '.join(_pairs(classes, MIRROR_PAIRS))} are "
                       "mirror images of each other. Remove it.")
        elif name == "HorizontalFlip":  # the presets leave it out for these classes (pipeline.mirrors)
            out.append("**HorizontalFlip** mirrors images. Your classes look like digits or letters, and a mirrored "
                       "character is one the model will never be shown: it spends its training on them. On the "
                       "digits sample, fine-tuning scored lower with it. Remove it, unless your images can come "
                       "mirrored.")
    return out


def class_colours(images_by_class: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each class's mean colour as a 2-vector: direction = hue, length = saturation (0 for grey)."""
    out = {}
    for label, images in images_by_class.items():
        rgb = np.asarray(images)[..., ::4, ::4, :].reshape(-1, 3).astype(np.float32) / 255.0
        mx, mn = rgb.max(1), rgb.min(1)
        sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
        # hue angle of each pixel from its position on the colour wheel
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        hue = np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)
        out[str(label)] = np.array([np.mean(sat * np.cos(hue)), np.mean(sat * np.sin(hue))]) if len(rgb) else np.zeros(2)
    return out


def colour_pairs(colours: dict[str, np.ndarray]) -> list[tuple[str, str, float, float | None]]:
    """Pairs of classes far apart in colour: (a, b, distance, hue angle in degrees or None if one is grey)."""
    names = sorted(colours)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            va, vb = colours[a], colours[b]
            dist = float(np.linalg.norm(va - vb))
            if dist <= COLOUR_APART:
                continue
            angle = None
            if np.linalg.norm(va) > SATURATED and np.linalg.norm(vb) > SATURATED:
                cos = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
                angle = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
            out.append((a, b, dist, angle))
    return sorted(out, key=lambda t: -t[2])


def _hue_shift_degrees(choice: dict) -> float:
    params = _spec_params(choice)
    if choice["name"] == "HueSaturationValue":
        return 2 * _max_abs(params, "hue_shift_limit")  # OpenCV's 8-bit hue runs 0…180 for 360°
    if choice["name"] == "ColorJitter":
        return 360 * _max_abs(params, "hue")
    return 0.0


def colour_warnings(choices: list[dict], colours: dict[str, np.ndarray] | None) -> list[str]:
    """Grey and hue shifts on classes that differ by colour."""
    pairs = colour_pairs(colours or {})
    if not pairs:
        return []
    shown = ", ".join(f"'{a}' and '{b}'" for a, b, _, _ in pairs[:3])
    out = []
    for choice in choices:
        if choice["name"] == "ToGray":
            out.append(f"**ToGray** removes colour, and some classes differ in colour ({shown}). If colour is what "
                       "tells them apart, a grey image has lost its class: lower p or remove it.")
        shift = _hue_shift_degrees(choice)
        angles = [(a, b, ang) for a, b, _, ang in pairs if ang is not None]
        if shift and angles:
            a, b, ang = min(angles, key=lambda t: t[2])
            if shift >= ang / 2:
                out.append(f"**{choice['name']}** shifts hue by up to {shift:.0f}°, while '{a}' and '{b}' are about "
                           f"{ang:.0f}° apart on the colour wheel: a shifted '{a}' can look like a '{b}'. "
                           "Narrow the hue range.")
    return out


def needs_colours(choices: list[dict]) -> bool:
    """Whether any rule of thumb would look at the classes' colours (greying or a hue shift is chosen)."""
    known = [c for c in choices if c.get("name") in augspec.BY_NAME]
    return any(c["name"] == "ToGray" or _hue_shift_degrees(c) for c in known)


def rule_warnings(choices: list[dict], classes: list[str], colours: dict | None = None) -> list[str]:
    """Plain warnings where a chosen transform may turn an image into another class."""
    known = [c for c in choices if c.get("name") in augspec.BY_NAME]
    return orientation_warnings(known, classes) + colour_warnings(known, colours)


# --- the measurement ------------------------------------------------------------------------------


def _pick(df, per_train: int, per_val: int, seed: int):
    """Up to per_train training and per_val validation images of each class (val falls back to train)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for _, rows in df.groupby("label", sort=True):
        order = rows.index.to_numpy()[rng.permutation(len(rows))]
        val = [i for i in order if df.at[i, "split"] == "val"][:per_val]
        taken = set(val)
        rest = [i for i in order if i not in taken and df.at[i, "split"] != "test"]
        if not val:  # no validation images of this class: hold out a few training ones
            val, rest = rest[:min(per_val, len(rest) // 2)], rest[min(per_val, len(rest) // 2):]
        val_idx += val
        train_idx += rest[:per_train]
    return df.loc[train_idx], df.loc[val_idx]


def _embed(model, images: np.ndarray, pre, batch: int = 64) -> np.ndarray:
    import torch

    from imgcls.vision.features import embed
    from imgcls.vision.imgcache import to_tensor

    with torch.inference_mode():
        return np.concatenate([embed(model, to_tensor(images[s:s + batch], pre.mean, pre.std,
                                                      channels_last=True)).float().numpy()
                               for s in range(0, len(images), batch)]) if len(images) else np.zeros((0, 1))


def _per_class(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.array([float(np.mean(pred[y == c] == c)) if np.any(y == c) else np.nan for c in range(n_classes)])


def measure(dataset: str, choices: list[dict], per_train: int = 16, per_val: int | None = None, seed: int = 0,
            backbone: str | None = None, progress: Callable[[float, str], None] | None = None) -> dict:
    """Accuracy lost per transform (alone, p=1) and class, by a linear probe trained on clean features.

    Small on purpose: 16 training images per class, and about 50 validation images in all (4 to 10 per
    class), embedded once per transform, so a CPU answers in seconds to a minute.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from imgcls.store import workspace
    from imgcls.vision.infer import fit_size
    from imgcls.vision.models import DEFAULT_BACKBONE, frozen_backbone
    from imgcls.vision.preprocess import Preprocess

    started, backbone = time.time(), backbone or DEFAULT_BACKBONE
    say = progress or (lambda f, m: None)
    df = workspace.read_manifest(dataset)
    df = df[~df["excluded"]].reset_index(drop=True)
    classes = sorted(df["label"].astype(str).unique())
    if len(classes) < 2:
        raise ValueError("The measurement needs at least two classes.")
    per_val = per_val or max(4, min(10, VAL_BUDGET // len(classes)))
    train, val = _pick(df.assign(label=df["label"].astype(str)), per_train, per_val, seed)
    pre = Preprocess.for_backbone(backbone)  # the backbone's own resolution keeps this quick
    size = pre.img_size
    both = np.concatenate([train["path"], val["path"]]), np.concatenate([train["hash"], val["hash"]])
    say(0.05, "Reading images")
    images = pre.load_images(workspace.dataset_dir(dataset), list(both[0]), list(both[1]))
    model = frozen_backbone(backbone)
    say(0.2, "Backbone features of the clean images")
    feats = pre.extract(model, images, list(both[1]))
    index = {c: i for i, c in enumerate(classes)}
    y_tr, y_va = train["label"].map(index).to_numpy(), val["label"].map(index).to_numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    probe.fit(feats[:len(train)], y_tr)
    clean = _per_class(probe.predict(feats[len(train):]), y_va, len(classes))
    val_images = images[len(train):]
    names = list(dict.fromkeys(c["name"] for c in choices if c.get("name") in augspec.BY_NAME))
    drops = []
    for t, name in enumerate(names):
        say(0.3 + 0.7 * t / max(len(names), 1), f"Trying {name}")
        choice = next(c for c in choices if c["name"] == name)
        pipeline = augspec.build([{**choice, "p": 1.0}], img_size=size, seed=seed)
        batch = np.stack([fit_size(pipeline(image=img)["image"], size) for img in val_images])
        scored = _per_class(probe.predict(_embed(model, batch, pre)), y_va, len(classes))
        drops.append((clean - scored).tolist())
    say(1.0, "Done")
    return {"transforms": names, "classes": classes, "clean": clean.tolist(), "drop": drops,
            "val_per_class": [int(np.sum(y_va == c)) for c in range(len(classes))],
            "train_images": len(train), "backbone": backbone, "img_size": size,
            "seconds": round(time.time() - started, 2)}


def worst(result: dict, limit: float = 0.3) -> list[str]:
    """The transform/class pairs that lose more than `limit` accuracy, in plain words, worst first."""
    rows = [(d, t, c) for t, row in zip(result["transforms"], result["drop"])
            for c, d in zip(result["classes"], row) if d == d and d > limit]
    return [f"**{t}** costs class '{c}' {100 * d:.0f} points of accuracy." for d, t, c in sorted(rows, reverse=True)]


def drop_figure(result: dict):
    """Heatmap of the accuracy lost, transform × class, in percentage points (red: the label suffers)."""
    import plotly.graph_objects as go

    z = np.array(result["drop"], dtype=float).reshape(len(result["transforms"]), len(result["classes"])) * 100
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:+.0f}", otypes=[str])(np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{c}" for c in result["classes"]], y=result["transforms"], text=text, texttemplate="%{text}",
        colorscale="RdBu_r", zmid=0, zmin=-100, zmax=100, colorbar={"title": "points lost<br>(− gained)"},
        hovertemplate="%{y} on class %{x}: %{z:+.0f} points<extra></extra>"))
    fig.update_layout(height=120 + 36 * len(result["transforms"]), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis={"title": "class", "type": "category"}, yaxis={"autorange": "reversed"},
                      title={"text": "Accuracy lost when each transform is applied to every validation image",
                             "font": {"size": 14}})
    return fig
