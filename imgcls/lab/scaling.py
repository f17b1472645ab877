"""Quick experiments on how much and how clean the data is: accuracy against data size, and label noise."""

from __future__ import annotations

import numpy as np

from imgcls.lab.data import accuracy, clean_features, fit_probe, noise_points, pct, per_class
from imgcls.lab.quick import series


def power_law(n, a, b, c):
    """The learning curve we fit: accuracy ≈ a − b·n^(−c), rising towards a as n grows."""
    return a - b * np.power(n, -c)


def fit_curve(x, y) -> tuple[callable, str]:
    """Fit accuracy against images per class: a power law where the points allow, else log-linear."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) >= 4 and np.ptp(y) > 1e-9:
        from scipy.optimize import curve_fit

        try:
            params, _ = curve_fit(power_law, x, y, p0=(min(1.0, y.max() + 0.02), max(np.ptp(y), 0.05), 0.5),
                                  bounds=([0, 0, 0.05], [1, 10, 3]), maxfev=20000)
            return (lambda n: np.clip(power_law(np.asarray(n, float), *params), 0, 1)), "a − b·n^(−c)"
        except (RuntimeError, ValueError):
            pass  # too few or too scattered points: the simpler curve below still says something
    if len(np.unique(x)) < 2:
        return (lambda n: np.full(np.shape(n), y.mean() if len(y) else np.nan)), "flat"
    slope, intercept = np.polyfit(np.log(x), y, 1)
    return (lambda n: np.clip(intercept + slope * np.log(np.asarray(n, float)), 0, 1)), "a + b·log(n)"


def subsample(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of `fraction` of each class's training images (at least one per class)."""
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep.append(rng.permutation(idx)[:max(1, int(round(fraction * len(idx))))])
    return np.sort(np.concatenate(keep))


def _measure_sizes(lab, cfg, f_tr, f_va, say):
    """Mean accuracy (overall and per class) and images per class at each fraction, over several draws."""
    n_cls = len(lab.classes)
    rows = []
    for i, fraction in enumerate(cfg.fractions):
        say(0.5 + 0.4 * i / len(cfg.fractions), f"Training on {fraction:.0%} of the training images")
        draws = 1 if fraction >= 1 else cfg.repeats  # all the images: every draw is the same
        overall, classes, counts = [], [], []
        for r in range(draws):
            keep = subsample(lab.y_tr, fraction, np.random.default_rng(cfg.seed + 1000 * r + i))
            if len(np.unique(lab.y_tr[keep])) < 2:
                continue
            probe = fit_probe(f_tr[keep], lab.y_tr[keep])
            overall.append(accuracy(probe, f_va, lab.y_va))
            classes.append(per_class(probe, f_va, lab.y_va, n_cls))
            counts.append(np.bincount(lab.y_tr[keep], minlength=n_cls))
        rows.append({"fraction": fraction, "accuracy": float(np.mean(overall)),
                     "per_class": np.nanmean(classes, axis=0).tolist(), "counts": np.mean(counts, axis=0).tolist()})
    return rows


def doubling(curve, n: float, measured: float) -> float:
    """Accuracy expected at twice n: the measured value plus the fitted curve's rise from n to 2n."""
    return float(np.clip(measured + float(curve(2 * n)) - float(curve(n)), 0, 1))


def size_result(lab, rows: list[dict], repeats: int) -> dict:
    """Series, per-class table, numbers and conclusion from the accuracy measured at each data size."""
    x = [float(np.mean(r["counts"])) for r in rows]
    y = [r["accuracy"] for r in rows]
    curve, form = fit_curve(x, y)
    now, full = float(np.bincount(lab.y_tr).mean()), rows[int(np.argmax(x))]
    doubled = doubling(curve, now, full["accuracy"])
    table = []
    for c, name in enumerate(lab.classes):
        n_c, at = int(np.sum(lab.y_tr == c)), full["per_class"][c]
        class_curve, _ = fit_curve([r["counts"][c] for r in rows], [r["per_class"][c] for r in rows])
        est = doubling(class_curve, n_c, at)
        table.append({"class": name, "training images": n_c, "accuracy": at, "estimate at 2× (extrapolated)": est,
                      "gain (points)": round(100 * (est - at), 1)})
    grid = np.linspace(min(x), 2 * now, 50)
    axis = "training images per class"
    out = [series("measured" + (f" (mean of {repeats} draws)" if repeats > 1 else ""), x, y, axis, mode="markers"),
           series(f"fitted {form}", grid.round(2), curve(grid), axis, mode="lines", dash="dot"),
           series("extrapolated at 2×", [2 * now], [doubled], axis, mode="markers", symbol="star")]
    numbers = {"images_per_class": round(now, 1), "accuracy": full["accuracy"],
               "smallest_images_per_class": round(min(x), 1), "smallest_accuracy": y[int(np.argmin(x))],
               "doubled_estimate": doubled, "doubled_gain_points": round(100 * (doubled - full["accuracy"]), 1),
               "curve": form, "repeats": repeats}
    return {"series": out, "table": table, "numbers": numbers, "conclusion": size_text(numbers, table)}


def data_size(lab, cfg, say) -> dict:
    """Accuracy against training images per class, a fitted curve, and what twice the data would give."""
    say(0.05, "Backbone features")
    f_tr, f_va = clean_features(lab, progress=lambda f, m: say(0.05 + 0.45 * f, m))
    return size_result(lab, _measure_sizes(lab, cfg, f_tr, f_va, say), cfg.repeats)


def size_text(nb: dict, table: list[dict]) -> str:
    """The data-size conclusion from its numbers and per-class table."""
    draws = f" (mean of {nb['repeats']} random draws)" if nb["repeats"] > 1 else ""
    text = (f"With all {nb['images_per_class']:g} training images per class (on average) the model reached "
            f"{pct(nb['accuracy'])} validation accuracy; with {nb['smallest_images_per_class']:g} per class it reached "
            f"{pct(nb['smallest_accuracy'])}{draws}. The fitted curve "
            f"({nb['curve']}) extrapolates to about {pct(nb['doubled_estimate'])} with twice the data, "
            f"{nb['doubled_gain_points']:+.1f} points: an extrapolation, not a measurement.")
    gains = sorted(table, key=lambda r: -r["gain (points)"])
    if gains and gains[0]["gain (points)"] >= 1.0:
        text += (f" The class that would gain most is '{gains[0]['class']}' ({gains[0]['gain (points)']:+.1f} points, "
                 f"from {pct(gains[0]['accuracy'])}).")
    else:
        text += " No class is expected to gain a full point: more of the same images would change little."
    return text


def rank_label_errors(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Training images ordered from most to least suspect label, by the Review page's ranking."""
    from imgcls.health.labelerrors import rank

    # the ranking's label quality covers every image it could cross-validate; the rest go last
    quality = rank([str(v) for v in labels], features)["quality"]
    order = sorted(quality, key=quality.get)
    return np.array(order + [i for i in range(len(labels)) if i not in quality], dtype=int)


def flip_labels(y: np.ndarray, share: float, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels with `share` of them changed to another class at random; and which ones changed."""
    flipped = np.sort(rng.permutation(len(y))[:int(round(share * len(y)))])
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    return noisy, flipped


def label_noise(lab, cfg, say) -> dict:
    """Validation accuracy after flipping a share of training labels, and how many flips the ranking finds."""
    say(0.05, "Backbone features")
    f_tr, f_va = clean_features(lab, progress=lambda f, m: say(0.05 + 0.6 * f, m))
    n_cls, rows = len(lab.classes), []
    for i, share in enumerate(cfg.noise_levels):
        say(0.65 + 0.33 * i / len(cfg.noise_levels), f"Training with {share:.0%} of the labels flipped")
        noisy, flipped = flip_labels(lab.y_tr, share, n_cls, np.random.default_rng(cfg.seed + i))
        acc = accuracy(fit_probe(f_tr, noisy), f_va, lab.y_va)
        found = None
        if len(flipped):
            top = rank_label_errors(f_tr, noisy)[:len(flipped)]
            found = int(np.isin(top, flipped).sum())
        rows.append({"flipped (%)": round(100 * share, 1), "flipped images": len(flipped), "validation accuracy": acc,
                     "found in top": found, "found share": found / len(flipped) if found is not None else None})
    return noise_result(rows, len(lab.y_va))


def noise_result(rows: list[dict], n_val: int) -> dict:
    """Series, numbers and conclusion from one row per label-noise level."""
    x = [r["flipped (%)"] for r in rows]
    hunted = [r for r in rows if r["found share"] is not None]
    out = [series("validation accuracy", x, [r["validation accuracy"] for r in rows], "labels flipped (%)",
                  panel="accuracy"),
           series("flips found by the ranking", [r["flipped (%)"] for r in hunted], [r["found share"] for r in hunted],
                  "labels flipped (%)", "share of flipped labels found", panel="label-error ranking"),
           series("found by picking at random", [r["flipped (%)"] for r in hunted],
                  [r["flipped (%)"] / 100 for r in hunted], "labels flipped (%)", "share of flipped labels found",
                  panel="label-error ranking", dash="dot")]
    base, worst = rows[0], rows[-1]
    numbers = {"clean_accuracy": base["validation accuracy"], "noisiest_accuracy": worst["validation accuracy"],
               "noisiest_share": worst["flipped (%)"], "validation_images": n_val,
               "drop_points": round(100 * (base["validation accuracy"] - worst["validation accuracy"]), 1),
               "found_shares": {str(r["flipped (%)"]): r["found share"] for r in hunted}}
    start = f"{base['flipped (%)']:g}% of the training labels" if base["flipped images"] else "no labels"
    accs = ", ".join(f"{r['flipped (%)']:g}% flipped ({r['flipped images']} images) {pct(r['validation accuracy'])}"
                     for r in rows[1:])
    text = f"With {start} flipped the model reached {pct(base['validation accuracy'])} validation accuracy"
    text += f"; with {accs}." if accs else "."
    noise = noise_points(base["validation accuracy"], worst["validation accuracy"], n_val)
    if len(rows) > 1 and abs(numbers["drop_points"]) <= noise:
        text += (f" The drop of {abs(numbers['drop_points']):.1f} points is within the noise of about {noise:.1f} "
                 "points: on these images the model shrugs off this much label noise.")
    if hunted:
        text += " Among its top suspects (as many as there were flips), the label-error ranking found " + ", ".join(
            f"{r['found in top']} of the {r['flipped images']} flipped images ({pct(r['found share'])}) at "
            f"{r['flipped (%)']:g}% noise" for r in hunted)
        text += ("; picking images at random would find about " + ", ".join(f"{r['flipped (%)']:g}%" for r in hunted)
                 + ".")
    return {"series": out, "table": rows, "numbers": numbers, "conclusion": text}
