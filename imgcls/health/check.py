"""Dataset health: what is wrong with a dataset's images and labels, ranked, with one score out of 100.

The report is saved as datasets/<name>/health.json with the dataset version it describes
(`imgcls.store.versions`) and each checked image's label and split as they were, so a later reader can tell what
changed since; `is_stale` says when later edits outdate it. `healthjob` runs the check in the background.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from imgcls.health import duplicates, imagestats, labelerrors
from imgcls.store import rowdigest, versions, workspace

# Embeddings live in healthscan, which loads torch: reading a saved report (every page rerun) needs none of it.
__all__ = ["GROUP_KINDS", "KINDS", "check", "explain", "is_stale", "load", "per_image", "score", "strength"]

FORMAT = 2  # 2: suspicion weighs each finding's score; images carry the label and split they were checked with
GROUP_KINDS = ("leakage", "conflicting_labels", "exact_duplicate", "near_duplicate")  # findings about copies

SEVERITIES = ("high", "medium", "low")
WEIGHT = {"high": 0.8, "medium": 0.4, "low": 0.2}  # share of the score one finding can cost, by severity
_NOT_FAULTS = {"duplicate", "symlink", "nested archive"}  # skipped on import, but nothing is wrong with them

# kind → (severity, title, message). Message placeholders agree with the count: {n} "1 image"/"3 images",
# {is} is/are, {has} has/have, {s} a verb's s, {it} it/them, {they} it/they, {its} its/their, {was} was/were.
KINDS = {
    "unreadable": ("medium", "Files that could not be read",
                   "{n} from the last import could not be opened as images and {was} left out: "
                   "re-export {it} as JPEG or PNG and import again."),
    "leakage": ("high", "Copies across training and validation/test",
                "{n} in validation or test {has} a copy among the training images, which makes the measured "
                "accuracy look better than it is: exclude {it} or move {it} to train."),
    "conflicting_labels": ("high", "Same picture, different labels",
                           "{n} {is} copies of one picture filed under different labels: decide which label is "
                           "right and relabel or exclude the others."),
    "label_error": ("high", "Possibly wrong labels",
                    "{n} look{s} more like another class than {its} own: check each suggested label and relabel "
                    "where it is right."),
    "exact_duplicate": ("medium", "Exact copies",
                        "{n} {is} byte-for-byte copies of another image: keep one of each and exclude the rest."),
    "class_imbalance": ("medium", "Unbalanced classes",
                        "Some classes have under a third as many images as the largest ({counts}): add images "
                        "to the small ones, or the model will tend to favour the big ones."),
    "outlier": ("medium", "Unusual for their class",
                "{n} look{s} unlike the rest of {its} class: check that {they} {is} labelled right and belong{s} "
                "in the dataset."),
    "tiny_image": ("medium", "Very small images",
                   "{n} {is} so small that the model sees little detail: replace {it} with larger versions or "
                   "exclude {it}."),
    "low_contrast": ("medium", "Flat images",
                     "{n} {is} almost one flat tone: check that {they} show{s} the subject and exclude {it} if not."),
    "near_duplicate": ("low", "Near-duplicates",
                       "{n} {is} resized, re-saved or slightly cropped copies of another image: keep one of each "
                       "so no picture counts twice."),
    "blurry": ("low", "Blurry images",
               "{n} {is} much blurrier than the rest of the dataset: exclude {it} if the subject cannot be made out."),
    "dark": ("low", "Very dark images",
             "{n} {is} nearly black: check that {they} show{s} the subject and exclude {it} if not."),
    "bright": ("low", "Very bright images",
               "{n} {is} nearly white or washed out: check that {they} show{s} the subject and exclude {it} if not."),
    "grayscale": ("low", "Black-and-white images",
                  "{n} {has} no colour while the rest of the dataset {has_} it: check that {they} belong{s} here, "
                  "or the model may learn colour as a clue."),
    "odd_shape": ("low", "Very long or tall images",
                  "{n} {is} so long or tall that the square the model sees cuts most of {it} away: crop {it} "
                  "around the subject."),
    "huge_image": ("low", "Very large images",
                   "{n} {is} over 24 megapixels, which slows every step and adds no detail the model can use: "
                   "shrink {it} before importing."),
}
IMBALANCE_RATIO = 3.0  # past 3:1 the loss favours the big classes (training's class weights start there too)


def _words(count: int, noun: str = "image") -> dict:
    """The words of a message that agree with the count."""
    one = count == 1
    pick = {"is": ("is", "are"), "has": ("has", "have"), "s": ("s", ""), "it": ("it", "them"),
            "they": ("it", "they"), "its": ("its", "their"), "was": ("was", "were")}
    return {"n": f"{count} {noun}{'' if one else 's'}", "has_": "has"} | {k: v[not one] for k, v in pick.items()}


def load(name: str) -> dict | None:
    """The last saved health report of a dataset, if any (one saved by an older version brought up to date)."""
    report = workspace.read_json(workspace.dataset_dir(name) / "health.json")
    if report and report.get("format") != FORMAT and isinstance(report.get("images"), dict):
        rescored = per_image(report.get("findings") or [], list(report["images"]))
        for path, entry in report["images"].items():
            entry["suspicion"] = rescored[path]["suspicion"]
    return report


def _stamp(name: str) -> list[int]:
    stat = (workspace.dataset_dir(name) / "manifest.csv").stat()
    return [stat.st_mtime_ns, stat.st_size]


def is_stale(name: str, report: dict | None) -> bool:
    """Whether labels, splits, exclusions or images changed since the report was computed."""
    if not report:
        return True
    # pages ask on every rerun: an untouched manifest file answers without reading and hashing it
    if report.get("manifest_stamp") == _stamp(name):
        return False
    if report.get("rows_fingerprint"):  # one read, kept up to date by each edit (older reports: the digest)
        return report["rows_fingerprint"] != rowdigest.fingerprint(name)
    digest = (report.get("version") or {}).get("digest") or report.get("manifest_digest")  # older reports
    return not versions.is_current(name, {"digest": digest})


# --- the checks ----------------------------------------------------------------------------------


def _raw(images, scores, **extra) -> dict:
    return {"images": list(images), "scores": [float(v) for v in scores], "groups": extra.get("groups", []),
            "suggested": extra.get("suggested", {}), "details": extra.get("details", {})}


def _unreadable(name: str, df: pd.DataFrame, failed: list[str]) -> dict:
    """Files the last import skipped as unreadable, and stored images that no longer decode."""
    from imgcls.ingest.imports import last_report

    skipped = [s for s in (last_report(name) or {}).get("skipped_files", [])
               if s.get("reason") not in _NOT_FAULTS
               and (s.get("reason") != "unsupported format" or "HEIC" in s.get("detail", ""))]
    names = [s["file"] for s in skipped] + failed
    reasons = {s["file"]: s.get("detail", "") for s in skipped} | {p: "no longer decodes" for p in failed}
    return _raw(names, [1.0] * len(names), details={"reasons": reasons})


def _imbalance(df: pd.DataFrame) -> dict:
    """Images of classes with under 1/IMBALANCE_RATIO as many images as the largest class."""
    counts = df["label"].value_counts()
    if len(counts) < 2 or counts.max() <= IMBALANCE_RATIO * counts.min():
        return _raw([], [])
    small = counts[counts * IMBALANCE_RATIO < counts.max()]
    rows = df[df["label"].isin(small.index)]
    scores = 1 - rows["label"].map(counts).to_numpy() / counts.max()
    order = np.argsort(-scores, kind="stable")
    return _raw(rows.index.to_numpy()[order], scores[order],
                details={"counts": {str(k): int(v) for k, v in counts.items()}, "small": [str(k) for k in small.index]})


def _look_checks(df: pd.DataFrame, stats: dict) -> dict:
    sizes = imagestats.size_flags(df["width"].to_numpy(), df["height"].to_numpy())
    tiny = np.zeros(len(df), dtype=bool)
    tiny[sizes["tiny_image"][0]] = True
    looks = imagestats.look_flags(stats, tiny) if len(df) else {}
    return {kind: _raw(idx, sc) for kind, (idx, sc) in (sizes | looks).items()}


def _label_checks(df: pd.DataFrame, emb: np.ndarray, progress=None) -> dict:
    labels = df["label"].astype(str).tolist()
    ranked = labelerrors.rank(labels, emb, progress=progress)
    suggested = dict(zip(ranked["indices"], ranked["suggested"]))
    out_idx, out_z = labelerrors.outliers(labels, emb)
    return {"label_error": _raw(ranked["indices"], ranked["scores"], suggested=suggested,
                                details={"left_out": ranked["left_out"]}),
            "outlier": _raw(out_idx, out_z)}


def check(name: str, *, progress: Callable[[float, str], None] | None = None, device: str = "cpu",
          img_size: int | None = None) -> dict:
    """Run every health check on a dataset's images that are not excluded; save and return the report.

    The images are embedded at `img_size` (default: a default linear run's, which then reuses the features)."""
    from imgcls.health.scan import scan_rows  # torch loads here: reading a saved report needs none of it

    started = time.time()
    say = progress or (lambda f, t: None)
    say(0.0, "Reading the manifest")
    stamp = _stamp(name)  # taken before the read: an edit in between makes it differ, never wrongly match
    rows = rowdigest.fingerprint(name)  # likewise
    full = workspace.read_manifest(name)
    df = full[~full["excluded"]].reset_index(drop=True)
    raw, failed = {}, []
    if len(df):
        scan = scan_rows(name, df, lambda f, t: say(0.02 + 0.8 * f, t), device, img_size=img_size)
        failed = df.loc[~scan["ok"], "path"].tolist()
        df = df[scan["ok"]].reset_index(drop=True)
        raw.update(_look_checks(df, scan["stats"]))
        say(0.84, "Looking for copies")
        raw.update(duplicates.find(df, scan["emb"], scan["hashes"], progress=lambda f, t: say(0.84 + 0.06 * f, t)))
        leaked = set(df.loc[raw["leakage"]["images"], "path"])
        raw["leakage"]["details"].update(duplicates.leak_effect(name, leaked) if leaked else {})
        say(0.9, "Looking for wrong labels")
        raw.update(_label_checks(df, scan["emb"], progress=lambda f, t: say(0.9 + 0.09 * f, t)))
        raw["class_imbalance"] = _imbalance(df)
    raw["unreadable"] = _unreadable(name, df, failed)
    report = _assemble(name, df, raw, versions.dataset_version(name, full), started)
    report.update(manifest_stamp=stamp, rows_fingerprint=rows, excluded=int(full["excluded"].sum()))
    workspace.atomic_write_json(workspace.dataset_dir(name) / "health.json", report)
    say(1.0, "Done")
    return report


# --- the report ----------------------------------------------------------------------------------


def _imbalance_words(details: dict) -> str:
    """'largest: ants 200; smallest: bees 12, wasps 9' (at most five small classes named)."""
    counts, small = details.get("counts", {}), details.get("small", [])
    if not small:
        return ""
    big = max(counts, key=counts.get)
    named = sorted(small, key=counts.get)[:5]
    rest = ", …" if len(small) > len(named) else ""
    return f"largest: {big} {counts[big]}; smallest: " + ", ".join(f"{k} {counts[k]}" for k in named) + rest


def _finding(kind: str, raw: dict, paths: list[str]) -> dict:
    severity, title, message = KINDS[kind]
    names = raw["images"] if kind == "unreadable" else [paths[i] for i in raw["images"]]
    counts = _imbalance_words(raw["details"])
    words = _words(len(names), "file" if kind == "unreadable" else "image")
    return {"kind": kind, "severity": severity, "title": title, "message": message.format(counts=counts, **words),
            "images": names, "scores": [round(v, 4) for v in raw["scores"]],
            "suggested": {paths[i]: lab for i, lab in raw.get("suggested", {}).items()},
            "groups": [[paths[i] for i in g] for g in raw["groups"]], "details": raw["details"]}


# Where a finding's score is a z-score or a ratio rather than 0…1, the value at which it starts to flag
_THRESHOLDS = {"outlier": labelerrors.OUTLIER_Z, "blurry": imagestats.BLUR_Z, "odd_shape": imagestats.ODD_ASPECT,
               "huge_image": 1.0}


def strength(kind: str, value: float) -> float:
    """How strongly a finding points at one image, 0…1, from its score (the flag threshold counts as 0.5)."""
    value = float(value)
    if kind in _THRESHOLDS:
        return 1.0 - 0.5 * min(1.0, _THRESHOLDS[kind] / max(value, 1e-9))
    return min(max(value, 0.0), 1.0)


def score(findings: list[dict], images: int) -> int:
    """Health out of 100 (100: nothing found).

    score = 100 − Σ 100 × WEIGHT[severity] × √(share of images the finding names), floored at 0.
    The square root makes the first few problems count: wrong labels on 1% of the images cost
    8 points, on 10% cost 25; a low-severity finding on 1% costs 2.
    """
    total = max(images, 1)
    lost = sum(100 * WEIGHT[f["severity"]] * np.sqrt(min(len(f["images"]) / total, 1.0)) for f in findings)
    return int(round(max(0.0, 100.0 - lost)))


def per_image(findings: list[dict], paths: list[str]) -> dict[str, dict]:
    """Each image's findings and suspicion: 1 − Π(1 − weight × strength) over the findings that name it."""
    out = {p: {"suspicion": 0.0, "kinds": []} for p in paths}
    doubt = dict.fromkeys(paths, 1.0)
    for f in findings:
        for p, value in zip(f.get("images") or [], f.get("scores") or []):
            if p in out and f["kind"] not in out[p]["kinds"]:  # unreadable files are not manifest images
                out[p]["kinds"].append(f["kind"])
                # independent pieces of evidence: each leaves the share of the doubt it does not explain
                doubt[p] *= 1 - WEIGHT.get(f.get("severity"), 0.2) * strength(f["kind"], value)
    for p, entry in out.items():
        entry["suspicion"] = round(1 - doubt[p], 4)
    return out


def _assemble(name: str, df: pd.DataFrame, raw: dict, version: dict, started: float) -> dict:
    paths = df["path"].tolist()
    findings = [_finding(kind, raw[kind], paths) for kind in KINDS if raw.get(kind, {}).get("images")]
    findings.sort(key=lambda f: (SEVERITIES.index(f["severity"]), -len(f["images"])))
    images = per_image(findings, paths)
    for p, label, split in zip(paths, df["label"].astype(str), df["split"].astype(str)):
        images[p].update(label=label, split=split)  # as checked: a later reader can tell what changed since
    checked = len(df) + len(raw.get("unreadable", {}).get("images", []))
    return {"dataset": name, "format": FORMAT, "score": score(findings, checked),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 2), "images_checked": len(df), "version": version,
            "manifest_digest": version["digest"],
            "message": "" if len(df) else "There are no images to check: every image is excluded, or none imported.",
            "findings": findings, "images": images}


def explain(finding: dict) -> str:
    """The numbers behind a finding as plain sentences ('' when its message already says it all)."""
    kind = finding.get("kind")
    if kind == "label_error":
        return labelerrors.describe(finding)
    if kind in GROUP_KINDS:
        return duplicates.describe(finding)
    return ""
