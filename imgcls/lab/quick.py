"""Quick experiments on cached features: transfer learning, augmentation, and variability of the images.

Each takes the loaded images (`exp_data.LabData`), an `ExperimentConfig` and a progress callback, and
returns series to plot, a table, key numbers, and a conclusion written from those numbers.
"""

from __future__ import annotations

import numpy as np

from imgcls.augment import pipeline as augment
from imgcls.lab.data import (TRANSFORMS, accuracy, augmented_features, clean_features, count, fit_probe, head_curve,
                             noise_points, pct, points, strengths, transformed_features, val_subset)


def series(name: str, x, y, x_label: str, y_label: str = "validation accuracy", panel: str = "", **style) -> dict:
    """One line (or bars) of a chart, as plain JSON data."""
    return {"name": name, "x": list(x), "y": [None if v != v else float(v) for v in y], "x_label": x_label,
            "y_label": y_label, "panel": panel, **style}


def compare(better: str, worse: str, diff: float, noise: float) -> str:
    """A sentence on a difference of accuracies, honest about differences within the noise."""
    if abs(100 * diff) <= noise:
        # two standard errors of the validation sample: another draw of images could move it this much
        return (f"No clear difference: {points(diff)} points is within the noise of about {noise:.1f} points "
                "expected from this many validation images.")
    if diff > 0:
        return f"{better} is ahead by {points(diff)} points, more than the noise of about {noise:.1f} points."
    return (f"Here the usual result is reversed: {worse} is ahead by {points(diff)} points "
            f"(noise about {noise:.1f} points).")


def _first_epoch_at(curve: list[float], share: float = 0.95) -> int:
    """The first epoch that reached `share` of the curve's final value."""
    target = share * curve[-1]
    return next(i + 1 for i, v in enumerate(curve) if v >= target)


def transfer(lab, cfg, say) -> dict:
    """Linear probe on pretrained features against the same probe on a random-weights backbone."""
    say(0.05, "Features from the pretrained backbone")
    p_tr, p_va = clean_features(lab, True, cfg.seed, progress=lambda f, m: say(0.05 + 0.4 * f, m))
    say(0.45, "Features from the same backbone with random weights")
    r_tr, r_va = clean_features(lab, False, cfg.seed, progress=lambda f, m: say(0.45 + 0.4 * f, m))
    say(0.85, "Training the last layer on each")
    epochs = cfg.epochs_or(30)
    pre = head_curve(p_tr, lab.y_tr, p_va, lab.y_va, len(lab.classes), epochs, cfg.seed)
    rnd = head_curve(r_tr, lab.y_tr, r_va, lab.y_va, len(lab.classes), epochs, cfg.seed)
    a, b = pre["val"][-1], rnd["val"][-1]
    noise = noise_points(a, b, len(lab.y_va))
    numbers = {"pretrained_accuracy": a, "scratch_accuracy": b, "gap_points": round(100 * (a - b), 1),
               "epochs": epochs, "noise_points": round(noise, 1), "validation_images": len(lab.y_va),
               "pretrained_epoch_95": _first_epoch_at(pre["val"]), "scratch_epoch_95": _first_epoch_at(rnd["val"])}
    text = (f"Starting from pretrained weights, the last layer reached {pct(a)} validation accuracy against "
            f"{pct(b)} on the same network with random weights (chance: {pct(1 / len(lab.classes))}), with the same "
            f"{count(epochs, 'epoch')} of training: a gap of {numbers['gap_points']:.1f} points. "
            + compare("Pretrained", "the random network", a - b, noise)
            + f" The pretrained model was within 5% of its final accuracy by epoch {numbers['pretrained_epoch_95']}, "
            f"the random one by epoch {numbers['scratch_epoch_95']}.")
    x = list(range(1, epochs + 1))
    return {"series": [series("pretrained", x, pre["val"], "epoch"), series("random weights", x, rnd["val"], "epoch")],
            "table": [{"start": "pretrained", "train accuracy": pre["train"][-1], "validation accuracy": a},
                      {"start": "random weights", "train accuracy": rnd["train"][-1], "validation accuracy": b}],
            "numbers": numbers, "conclusion": text}


def pipeline_spec(dataset: str) -> tuple[str | dict, str]:
    """The dataset's saved pipeline, else the light preset; and how to name it in a sentence."""
    saved = augment.load_pipeline(dataset)
    return (saved, "the saved pipeline") if saved else ("light", "the light preset, as no pipeline is saved")


def _probes(lab, cfg, say, start: float, width: float):
    """The probe trained on clean features, and the one trained on clean plus augmented copies."""
    spec, spec_name = pipeline_spec(lab.dataset)
    f_tr, _ = clean_features(lab, progress=lambda f, m: say(start + 0.3 * width * f, m))
    say(start + 0.3 * width, "Features of augmented copies of the training images")
    a_tr, a_y = augmented_features(lab, spec, cfg.copies, cfg.seed,
                                   progress=lambda f, m: say(start + 0.3 * width + 0.7 * width * f, m))
    x_aug, y_aug = np.concatenate([f_tr, a_tr]), np.concatenate([lab.y_tr, a_y])
    return fit_probe(f_tr, lab.y_tr), fit_probe(x_aug, y_aug), (x_aug, y_aug), spec_name


def augmentation(lab, cfg, say) -> dict:
    """Train/validation accuracy and their gap, for a probe trained with and without augmented copies."""
    clean, augd, (x_aug, y_aug), spec_name = _probes(lab, cfg, say, 0.05, 0.9)
    f_tr, f_va = clean_features(lab)
    rows = {"without augmentation": (accuracy(clean, f_tr, lab.y_tr), accuracy(clean, f_va, lab.y_va)),
            "with augmentation": (accuracy(augd, x_aug, y_aug), accuracy(augd, f_va, lab.y_va))}
    (ct, cv), (at, av) = rows.values()
    noise = noise_points(cv, av, len(lab.y_va))
    numbers = {"clean_train_accuracy": ct, "clean_val_accuracy": cv, "clean_gap_points": round(100 * (ct - cv), 1),
               "augmented_train_accuracy": at, "augmented_val_accuracy": av,
               "augmented_gap_points": round(100 * (at - av), 1), "val_change_points": round(100 * (av - cv), 1),
               "copies": cfg.copies, "noise_points": round(noise, 1), "validation_images": len(lab.y_va)}
    gap_word = "narrower" if numbers["augmented_gap_points"] < numbers["clean_gap_points"] else "not narrower"
    text = (f"Without augmentation the model scored {pct(ct)} on its training images and {pct(cv)} on validation: "
            f"a gap of {numbers['clean_gap_points']:.1f} points. Trained also on {cfg.copies} augmented "
            f"copies of each training image ({spec_name}), it scored {pct(at)} on its training images and "
            f"{pct(av)} on validation: a gap of {numbers['augmented_gap_points']:.1f} points, {gap_word}. "
            + compare("With augmentation the model", "the model without augmentation", av - cv, noise))
    return {**gap_chart(rows), "numbers": numbers, "conclusion": text}


def gap_chart(rows: dict) -> dict:
    """Bars of training and validation accuracy per model, and the table with their gap."""
    return {"series": [series(k, ["training", "validation"], v, "", "accuracy", type="bar") for k, v in rows.items()],
            "table": [{"model": k, "train accuracy": t, "validation accuracy": v,
                       "gap (points)": round(100 * (t - v), 1)} for k, (t, v) in rows.items()]}


def variability(lab, cfg, say) -> dict:
    """Accuracy on validation images rotated, rescaled, darkened and blurred, with and without augmentation."""
    clean, augd, _, spec_name = _probes(lab, cfg, say, 0.02, 0.4)
    # every change × strength embeds the chosen images again: a subset keeps this to a minute or two
    index = val_subset(lab.y_va, cfg.changed_val_per_class, cfg.seed)
    y_va = lab.y_va[index]
    out, table, numbers, sentences = [], [], {}, []
    done, total = 0, len(TRANSFORMS) * max(cfg.strengths - 1, 1)
    for name, (x_label, _, _) in TRANSFORMS.items():
        levels = strengths(name, cfg.strengths)
        accs = {"without augmentation": [], "with augmentation": []}
        for level in levels:
            say(0.42 + 0.56 * done / total, f"Validation images, {name} {level:g}")
            feats = transformed_features(lab, name, level, index)
            done += level != levels[0]
            accs["without augmentation"].append(accuracy(clean, feats, y_va))
            accs["with augmentation"].append(accuracy(augd, feats, y_va))
            table.append({"change": name, "strength": level, **{k: v[-1] for k, v in accs.items()}})
        out += [series(k, levels, v, x_label, panel=name) for k, v in accs.items()]
        sentences.append(variability_sentence(name, levels[-1], accs, numbers, len(y_va)))
    worst = min(TRANSFORMS, key=lambda t: numbers[f"{t}_clean_strongest"] - numbers["clean_accuracy"])
    numbers["validation_images"] = len(y_va)
    text = (f"On {len(y_va)} unchanged validation images the model scored {pct(numbers['clean_accuracy'])} "
            f"without augmentation and {pct(numbers['augmented_accuracy'])} with augmentation ({spec_name}). "
            + " ".join(sentences)
            + f" The change that hurt most was {worst}.")
    return {"series": out, "table": table, "numbers": {**numbers, "hardest": worst}, "conclusion": text}


def variability_sentence(name: str, level: float, accs: dict, numbers: dict, n_val: int) -> str:
    """One change's sentence (unchanged → strongest, both models); records its key numbers in `numbers`."""
    c0, c1 = accs["without augmentation"][0], accs["without augmentation"][-1]
    a0, a1 = accs["with augmentation"][0], accs["with augmentation"][-1]
    numbers.update({"clean_accuracy": c0, "augmented_accuracy": a0, f"{name}_clean_strongest": c1,
                    f"{name}_augmented_strongest": a1})
    what = {"rotation": f"Rotated by {level:g}°", "scale": f"Shrunk to {level:g}× their size",
            "darkening": f"Darkened to {level:g}× their brightness",
            "blur": f"Blurred with sigma {level:g} pixels"}[name]
    noise = noise_points(c1, a1, n_val)
    verdict = ("augmentation made no clear difference" if abs(100 * (a1 - c1)) <= noise
               else f"augmentation {'helped' if a1 > c1 else 'hurt'} by {points(a1 - c1)} points")
    return (f"{what}, accuracy {_went(c0, c1)} without augmentation and {_went(a0, a1)} with it: {verdict}.")


def _went(before: float, after: float) -> str:
    return f"stayed at {pct(after)}" if pct(before) == pct(after) else f"went from {pct(before)} to {pct(after)}"
