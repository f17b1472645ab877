"""Thorough experiments: the same five questions, answered with real fine-tuning runs (fewer points, slower).

Every run fine-tunes for the same number of network epochs with early stopping off (a fine-tuned run also
trains its new last layer on cached features first, which the conclusions say); the runs stay in the runs
list, tagged with the experiment that made them, and are never picked by default.
"""

from __future__ import annotations

import numpy as np

from imgcls.lab import data as exp_data, quick as exp_quick, scaling as exp_scaling
from imgcls.lab.quick import compare, series
from imgcls.lab.runs import last_epoch, predict, train_variant
from imgcls.train.run import TrainConfig


def _config(cfg, **changes) -> TrainConfig:
    epochs = cfg.epochs_or(3)
    base = {"dataset": cfg.dataset, "backbone": cfg.backbone, "strategy": "finetune", "epochs": epochs,
            "patience": epochs + 1, "head_epochs": 10, "img_size": cfg.img_size, "seed": cfg.seed, "augment": "saved"}
    return TrainConfig(**{**base, **changes})


def run(cfg, say) -> dict:
    """Run a thorough experiment of cfg.kind; the result has the same shape as a quick one."""
    recipe = {"transfer": transfer, "augmentation": augmentation, "variability": variability,
              "data-size": data_size, "label-noise": label_noise}[cfg.kind]
    return recipe(cfg, say)


def _lab(cfg, trained: dict) -> exp_data.LabData:
    """The dataset's images at the runs' resolution, every training and validation image."""
    from imgcls.store.runs import read_config

    return exp_data.load(cfg.dataset, cfg.backbone, read_config(trained["run"])["img_size"], cfg.seed)


def transfer(cfg, say) -> dict:
    """Fine-tuning from pretrained weights against training from scratch, the same epochs each."""
    tag = f"transfer-{cfg.dataset}"
    pre = train_variant(_config(cfg), say, 0.0, 0.5, "pretrained (finetune)", tag)
    # scratch trains at the pretrained run's resolution, so only the starting weights differ
    from imgcls.store.runs import read_config

    size = read_config(pre["run"])["img_size"]
    rnd = train_variant(_config(cfg, strategy="scratch", img_size=size), say, 0.5, 1.0, "random weights (scratch)", tag)
    curves = {"pretrained": [e["val_accuracy"] for e in pre["epochs"]],
              "random weights": [e["val_accuracy"] for e in rnd["epochs"]]}
    a, b = last_epoch(pre)["val_accuracy"], last_epoch(rnd)["val_accuracy"]
    n_val = _n_val(cfg)
    noise = exp_data.noise_points(a, b, n_val)
    epochs = cfg.epochs_or(3)
    numbers = {"pretrained_accuracy": a, "scratch_accuracy": b, "gap_points": round(100 * (a - b), 1),
               "epochs": epochs, "noise_points": round(noise, 1), "validation_images": n_val,
               "runs": [pre["run"], rnd["run"]]}
    text = (f"Fine-tuning from pretrained weights reached {exp_data.pct(a)} validation accuracy against "
            f"{exp_data.pct(b)} when training from random weights, each with "
            f"{exp_data.count(epochs, 'epoch')} of training the network (the pretrained run also trains its "
            f"new last layer first for 10 quick epochs on cached features): a gap of "
            f"{numbers['gap_points']:.1f} points. "
            + compare("Pretrained", "training from scratch", a - b, noise))
    return {"series": [series(k, list(range(1, len(v) + 1)), v, "epoch") for k, v in curves.items()],
            "table": [{"start": k, "run": t["run"], "train accuracy": last_epoch(t)["train_accuracy"],
                       "validation accuracy": last_epoch(t)["val_accuracy"]}
                      for k, t in (("pretrained", pre), ("random weights", rnd))],
            "numbers": numbers, "conclusion": text}


def _n_val(cfg) -> int:
    from imgcls.store import workspace

    df = workspace.read_manifest(cfg.dataset)
    return int(((df["split"] == "val") & ~df["excluded"]).sum())


def _with_without(cfg, say, hi: float) -> tuple[dict, dict, str]:
    spec, spec_name = exp_quick.pipeline_spec(cfg.dataset)
    tag = f"augmentation-{cfg.dataset}"
    augd = train_variant(_config(cfg, augment=spec), say, 0.0, hi / 2, "with augmentation", tag)
    clean = train_variant(_config(cfg, augment="none"), say, hi / 2, hi, "without augmentation", tag)
    return clean, augd, spec_name


def augmentation(cfg, say) -> dict:
    """Fine-tuning with the saved pipeline against without: the train/validation gap and accuracy."""
    clean, augd, spec_name = _with_without(cfg, say, 1.0)
    (ct, cv), (at, av) = ((last_epoch(t)["train_accuracy"], last_epoch(t)["val_accuracy"]) for t in (clean, augd))
    noise = exp_data.noise_points(cv, av, _n_val(cfg))
    numbers = {"clean_train_accuracy": ct, "clean_val_accuracy": cv, "clean_gap_points": round(100 * (ct - cv), 1),
               "augmented_train_accuracy": at, "augmented_val_accuracy": av,
               "augmented_gap_points": round(100 * (at - av), 1), "val_change_points": round(100 * (av - cv), 1),
               "noise_points": round(noise, 1), "runs": [clean["run"], augd["run"]]}
    pct = exp_data.pct
    text = (f"Fine-tuned without augmentation, the model scored {pct(ct)} on its training images in the last epoch "
            f"and {pct(cv)} on validation: a gap of {numbers['clean_gap_points']:.1f} points. With augmentation "
            f"({spec_name}) it scored {pct(at)} on its (augmented) training images and {pct(av)} on validation: "
            f"a gap of {numbers['augmented_gap_points']:.1f} points. "
            + compare("With augmentation the model", "the model without augmentation", av - cv, noise))
    rows = {"without augmentation": (ct, cv), "with augmentation": (at, av)}
    return {**exp_quick.gap_chart(rows), "numbers": numbers, "conclusion": text}


def variability(cfg, say) -> dict:
    """The two fine-tuned models (with and without augmentation) on changed validation images."""
    clean, augd, spec_name = _with_without(cfg, say, 0.7)
    lab = _lab(cfg, clean)
    index = exp_data.val_subset(lab.y_va, cfg.changed_val_per_class, cfg.seed)
    val, y_va = lab.images[lab.n_train:][index], lab.y_va[index]
    out, table, numbers, sentences = [], [], {}, []
    for i, (name, (x_label, _, _)) in enumerate(exp_data.TRANSFORMS.items()):
        say(0.7 + 0.3 * i / len(exp_data.TRANSFORMS), f"Validation images, {name}")
        levels = exp_data.strengths(name, cfg.strengths)
        accs = {"without augmentation": [], "with augmentation": []}
        for level in levels:
            batch = np.stack([exp_data.transform_image(img, name, level, lab.size) for img in val])
            for key, trained in (("without augmentation", clean), ("with augmentation", augd)):
                accs[key].append(float(np.mean(predict(trained["run"], batch) == y_va)))
            table.append({"change": name, "strength": level, **{k: v[-1] for k, v in accs.items()}})
        out += [series(k, levels, v, x_label, panel=name) for k, v in accs.items()]
        sentences.append(exp_quick.variability_sentence(name, levels[-1], accs, numbers, len(y_va)))
    numbers["validation_images"] = len(y_va)
    text = (f"On {len(y_va)} unchanged validation images the fine-tuned model scored "
            f"{exp_data.pct(numbers['clean_accuracy'])} without augmentation and "
            f"{exp_data.pct(numbers['augmented_accuracy'])} with augmentation ({spec_name}). "
            + " ".join(sentences))
    return {"series": out, "table": table, "numbers": {**numbers, "runs": [clean["run"], augd["run"]]},
            "conclusion": text}


def data_size(cfg, say) -> dict:
    """Fine-tuning on shares of the training images (one draw each); the curve through them."""
    lab = exp_data.load(cfg.dataset, cfg.backbone, None, cfg.seed)
    paths = np.array(lab.paths[:lab.n_train])
    rows, made = [], []
    for i, fraction in enumerate(cfg.fractions):
        keep = exp_scaling.subsample(lab.y_tr, fraction, np.random.default_rng(cfg.seed + i))
        drop = set(paths) - set(paths[keep])
        lo = i / len(cfg.fractions)
        trained = train_variant(_config(cfg), say, lo, lo + 1 / len(cfg.fractions), f"{fraction:.0%} of the images",
                                f"data-size-{cfg.dataset}", drop=drop)
        made.append(trained["run"])
        if i == 0:
            lab = _lab(cfg, trained)
        pred = predict(trained["run"], lab.images[lab.n_train:])
        per = [float(np.mean(pred[lab.y_va == c] == c)) if np.any(lab.y_va == c) else np.nan
               for c in range(len(lab.classes))]
        rows.append({"fraction": fraction, "accuracy": float(np.mean(pred == lab.y_va)), "per_class": per,
                     "counts": np.bincount(lab.y_tr[keep], minlength=len(lab.classes)).tolist()})
    out = exp_scaling.size_result(lab, rows, 1)
    out["numbers"]["runs"] = made
    return out


def label_noise(cfg, say) -> dict:
    """Fine-tuning with a share of training labels flipped; the ranking hunts the flips on pretrained features."""
    lab = exp_data.load(cfg.dataset, cfg.backbone, None, cfg.seed)
    f_tr, _ = exp_data.clean_features(lab)
    paths, rows, made = lab.paths[:lab.n_train], [], []
    for i, share in enumerate(cfg.noise_levels):
        noisy, flipped = exp_scaling.flip_labels(lab.y_tr, share, len(lab.classes), np.random.default_rng(cfg.seed + i))
        relabel = {paths[j]: lab.classes[noisy[j]] for j in flipped}
        lo = i / len(cfg.noise_levels)
        trained = train_variant(_config(cfg), say, lo, lo + 1 / len(cfg.noise_levels), f"{share:.0%} labels flipped",
                                f"label-noise-{cfg.dataset}", relabel=relabel)
        made.append(trained["run"])
        found = None
        if len(flipped):
            top = exp_scaling.rank_label_errors(f_tr, noisy)[:len(flipped)]
            found = int(np.isin(top, flipped).sum())
        rows.append({"flipped (%)": round(100 * share, 1), "flipped images": len(flipped),
                     "validation accuracy": last_epoch(trained)["val_accuracy"], "found in top": found,
                     "found share": found / len(flipped) if found is not None else None, "run": trained["run"]})
    out = exp_scaling.noise_result(rows, len(lab.y_va))
    out["numbers"]["runs"] = made
    return out
