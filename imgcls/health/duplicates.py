"""Copies of one picture: exact and near duplicates, leaks across splits, and copies with two labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgcls.health import similarity

HELD_OUT = ("val", "test")  # a copy of a training image here inflates the measured accuracy


def _pair_sims(pairs) -> dict[tuple[int, int], float]:
    return {(min(p[0], p[1]), max(p[0], p[1])): float(p[2]) for p in pairs}


def _best(sims: dict, i: int, members) -> float:
    """Highest similarity between image i and any of members (1.0 for the same file content)."""
    return max((sims.get((min(i, j), max(i, j)), 0.0) for j in members if j != i), default=0.0)


def find(df: pd.DataFrame, emb: np.ndarray | None, hashes: np.ndarray | None, progress=None) -> dict[str, dict]:
    """Raw duplicate findings over manifest rows 0…n−1: kind → images, scores, groups, details
    (progress(fraction, text) is told as the near-duplicate search goes)."""
    n = len(df)
    exact = [(int(a), int(b), 1.0) for _, rows in df.groupby("hash", sort=False).indices.items()
             for a, b in zip(rows[:-1], rows[1:])]  # a chain links every copy of one file content
    near = []
    if emb is not None and hashes is not None and n > 1:
        exact_hash = df["hash"].to_numpy()
        pairs = similarity.near_pairs(emb, hashes, progress=progress)
        near = [p for p in pairs if exact_hash[p[0]] != exact_hash[p[1]]]
    sims = _pair_sims(exact + near)
    same = similarity.groups(n, exact + near)  # every copy of a picture, exact or near, in one group
    out = {"exact_duplicate": _as_finding(similarity.groups(n, exact), sims),
           "near_duplicate": _as_finding(similarity.groups(n, near), sims)}
    out["near_duplicate"]["details"] = {"pairs": len(near)}
    out["leakage"] = _leaks(df, same, sims)
    out["conflicting_labels"] = _conflicts(df, same, sims)
    return out


def _as_finding(groups: list[list[int]], sims: dict) -> dict:
    images, scores = [], []
    for g in groups:
        for i in g:
            images.append(i)
            scores.append(_best(sims, i, g))
    return _finding(images, scores, groups, {})


def _finding(images: list[int], scores: list[float], groups: list[list[int]], details: dict) -> dict:
    """A finding of copies: its images most alike first, with their groups and details."""
    order = np.argsort(-np.asarray(scores), kind="stable") if scores else []
    return {"images": [images[k] for k in order], "scores": [scores[k] for k in order], "groups": groups,
            "details": details}


def _leaks(df: pd.DataFrame, same: list[list[int]], sims: dict) -> dict:
    """Held-out images with a copy in the training split (the held-out copy is the one to act on)."""
    split = df["split"].to_numpy()
    images, scores, groups = [], [], []
    for g in same:
        train = [i for i in g if split[i] == "train"]
        held = [i for i in g if split[i] in HELD_OUT]
        if train and held:
            groups.append(g)
            for i in held:
                images.append(i)
                scores.append(_best(sims, i, train))
    return _finding(images, scores, groups,
                    {"by_split": {s: int(sum(split[i] == s for i in images)) for s in HELD_OUT}})


def _conflicts(df: pd.DataFrame, same: list[list[int]], sims: dict) -> dict:
    """Copies of one picture filed under different labels."""
    labels = df["label"].to_numpy()
    conflicted = [g for g in same if len({labels[i] for i in g}) > 1]
    found = _as_finding(conflicted, sims)
    found["details"] = {"labels": [sorted({str(labels[i]) for i in g}) for g in conflicted]}
    return found


def leak_effect(name: str, leaked: set[str]) -> dict:
    """Validation accuracy of the latest evaluated run on this dataset, with and without leaked images."""
    from imgcls.store import runs

    finished = runs.model_runs(name)
    for run_id in finished:
        path = runs.run_dir(run_id) / "predictions-val.csv"
        if not path.exists():
            continue
        table = pd.read_csv(path, dtype={"path": str}, keep_default_na=False)
        correct = table["correct"].astype(str).str.lower().isin(["true", "1"])
        clean = ~table["path"].isin(leaked)
        return {"run": run_id, "accuracy": round(float(correct.mean()), 4) if len(table) else None,
                "accuracy_without_leaks": round(float(correct[clean].mean()), 4) if clean.any() else None,
                "leaked_val_images": int((~clean).sum())}
    if finished:
        return {"run": finished[0], "note": "The latest run has no saved validation predictions: evaluate it."}
    return {"note": "No finished training run on this dataset yet."}


def _groups_words(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _leak_words(details: dict) -> list[str]:
    by_split = details.get("by_split") or {}
    where = [f"{n} in {'validation' if s == 'val' else s}" for s, n in by_split.items() if n]
    parts = [f"Of the copies to act on, {' and '.join(where)}."] if where else []
    if details.get("accuracy") is not None and details.get("accuracy_without_leaks") is not None:
        parts.append(f"Run {details.get('run')} scored {details['accuracy']:.1%} on validation; without these "
                     f"copies it scores {details['accuracy_without_leaks']:.1%}, the fairer figure.")
    elif details.get("note"):
        parts.append(str(details["note"]))
    return parts


def describe(finding: dict) -> str:
    """A copy finding's numbers in plain words: how many groups, where the leaks are, which labels clash."""
    kind, groups, details = finding.get("kind"), finding.get("groups") or [], finding.get("details") or {}
    parts = []
    if kind in ("exact_duplicate", "near_duplicate") and groups:
        extra = sum(len(g) - 1 for g in groups)
        parts.append(f"They form {_groups_words(len(groups), 'group')} of copies: keeping one of each means "
                     f"{_groups_words(extra, 'image')} fewer.")
    elif kind == "leakage":
        verb = "appears" if len(groups) == 1 else "appear"
        parts += [f"{_groups_words(len(groups), 'picture')} {verb} both in training and in validation or test."]
        parts += _leak_words(details)
    elif kind == "conflicting_labels" and groups:
        pairs = [" and ".join(labels) for labels in details.get("labels") or []]
        named = ", ".join(dict.fromkeys(pairs[:3])) + (", …" if len(set(pairs)) > 3 else "")
        parts.append(f"{_groups_words(len(groups), 'picture')} carr{'ies' if len(groups) == 1 else 'y'} more than "
                     f"one label ({named}).")
    return " ".join(parts)


def group_settled(kind: str, members: list[dict | None]) -> bool:
    """Whether a group of copies no longer needs action, judged on its members as they are now
    (dicts with label, split and excluded; None for a member deleted since)."""
    live = [m for m in members if m is not None and not m["excluded"]]
    if kind == "leakage":
        splits = {m["split"] for m in live}
        return "train" not in splits or not splits & set(HELD_OUT)
    if kind == "conflicting_labels":
        return len({m["label"] for m in live}) <= 1
    return len(live) <= 1
