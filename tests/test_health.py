"""Dataset health checks: planted faults in the shapes sample are found, simple checks on tiny images,
edge cases, the saved report and its staleness, and the CLI."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faults import NEAR_COPIES, encode as _encode
from PIL import Image, ImageFilter

from imgcls.health import check as health, duplicates, imagestats, job as healthjob
from imgcls.ingest.imports import import_sample, import_zip
from imgcls.store import versions, workspace

REPO = Path(__file__).resolve().parents[1]
FLIP_SHARE = 0.10
PER_CLASS = 100  # the whole sample: with 60 a class, confident learning flagged only ~80% of the flips


# --- planting faults in the shapes sample --------------------------------------------------------


class Planter:
    """Adds rows to a dataset's manifest directly (import would drop copies), remembering the truth."""

    def __init__(self, name: str):
        self.name, self.folder = name, workspace.dataset_dir(name)
        self.df = workspace.read_manifest(name)
        self.new: list[dict] = []

    def image(self, path: str) -> Image.Image:
        return Image.open(self.folder / path).convert("RGB")

    def add(self, data: bytes, like: pd.Series, tag: str, **changes) -> str:
        """A new manifest row with these file bytes, copying the fields of row `like` but for `changes`."""
        digest = hashlib.sha256(data).hexdigest()
        ext = "jpg" if data.startswith(b"\xff\xd8") else "png"
        rel = f"images/{tag}-{len(self.new):03d}-{digest[:12]}.{ext}"
        (self.folder / rel).write_bytes(data)
        img = Image.open(io.BytesIO(data))
        row = dict(like.to_dict(), path=rel, hash=digest, width=img.width, height=img.height, bytes=len(data),
                   source=f"planted/{tag}/{Path(like['source']).name}", format=img.format, **changes)
        self.new.append(row)
        return rel

    def save(self) -> None:
        workspace.write_manifest(self.folder, pd.concat([self.df, pd.DataFrame(self.new)], ignore_index=True))


def plant(name: str, per_class: int = PER_CLASS, seed: int = 0) -> dict:
    """Keep per_class images of each class (the rest excluded); flip 10% of their labels; add exact copies,
    near copies (resized, JPEG, cropped), leaks across splits and copies under a second label."""
    rng = np.random.default_rng(seed)
    p = Planter(name)
    df, classes = p.df, sorted(p.df["label"].unique())
    kept = np.concatenate([rng.permutation(idx)[:per_class] for idx in df.groupby("label").indices.values()])
    df["excluded"] = ~df.index.isin(kept)
    order = rng.permutation(kept)
    flips, rest = order[:int(FLIP_SHARE * len(order))], iter(order[int(FLIP_SHARE * len(order)):])
    truth = {"flipped": set(df.loc[flips, "path"]), "exact": [], "near": [], "leak": [], "conflict": [],
             "leak_exact": [], "leak_near": []}
    for i in flips:
        df.loc[i, "label"] = rng.choice([c for c in classes if c != df.loc[i, "label"]])
    train = lambda: next(i for i in rest if df.loc[i, "split"] == "train")  # noqa: E731
    for _ in range(5):  # byte-for-byte copies in the same split
        row = df.loc[next(rest)]
        truth["exact"].append((row["path"], p.add((p.folder / row["path"]).read_bytes(), row, "exact")))
    for (tag, make), _ in itertools.product(NEAR_COPIES.items(), range(4)):
        row = df.loc[next(rest)]
        truth["near"].append((row["path"], p.add(make(p.image(row["path"])), row, tag)))
    for k in range(6):  # training images copied (exactly, or re-saved as JPEG) into val and test
        row = df.loc[train()]
        data = (p.folder / row["path"]).read_bytes() if k < 3 else _encode(p.image(row["path"]), "JPEG", quality=95)
        pair = (row["path"], p.add(data, row, "leak", split=("val", "test")[k % 2]))
        truth["leak"].append(pair)
        truth["leak_exact" if k < 3 else "leak_near"].append(pair)
    for _ in range(3):  # the same picture filed under a second label
        row = df.loc[next(rest)]
        other = rng.choice([c for c in classes if c != row["label"]])
        truth["conflict"].append((row["path"], p.add((p.folder / row["path"]).read_bytes(), row, "conflict",
                                                     label=other)))
    p.save()
    return truth


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The shapes sample with planted faults, checked once for the whole module: (report, truth)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(tmp_path_factory.mktemp("health-home")))
        import_sample("shapes", "planted")
        truth = plant("planted")
        report = health.check("planted")
        yield report, truth


def _finding(report: dict, kind: str) -> dict:
    return next((f for f in report["findings"] if f["kind"] == kind), {"images": [], "groups": []})


def _pairs(groups) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}


def _pr(found: set, planted: set) -> tuple[float, float]:
    hit = len(found & planted)
    return hit / max(len(found), 1), hit / max(len(planted), 1)


# --- planted faults are found ----------------------------------------------------------------------


def test_label_errors_rank_flipped_images_first(planted):
    report, truth = planted
    ranked = _finding(report, "label_error")["images"]
    top = set(ranked[:int(0.15 * report["images_checked"])])
    wrong = truth["flipped"] | {copy for _, copy in truth["conflict"]}
    precision, recall = _pr(set(ranked), wrong)
    top_recall = len(top & truth["flipped"]) / len(truth["flipped"])
    print(f"\nlabel errors: {len(ranked)} flagged, precision {precision:.2f}, recall {recall:.2f}; "
          f"{top_recall:.0%} of the flipped images in the top 15%")
    assert top_recall >= 0.8
    suggested = _finding(report, "label_error")["suggested"]
    assert set(suggested) == set(ranked)


def test_every_planted_copy_and_leak_is_found(planted):
    report, truth = planted
    lines = []
    # every planted copy of a kind counts: a leaked exact copy is an exact duplicate too
    for kind, keys in (("exact_duplicate", ("exact", "leak_exact", "conflict")),
                       ("near_duplicate", ("near", "leak_near")), ("leakage", ("leak",))):
        found = _pairs(_finding(report, kind)["groups"])
        wanted = {frozenset(p) for key in keys for p in truth[key]}
        precision, recall = _pr(found, wanted)
        lines.append(f"{kind}: {len(found)} pairs found, precision {precision:.2f}, recall {recall:.2f}")
        assert wanted <= found, f"{kind}: missed {wanted - found}"
    leaked = set(_finding(report, "leakage")["images"])
    assert {copy for _, copy in truth["leak"]} <= leaked  # the held-out copy is the one to act on
    assert not leaked & {orig for orig, _ in truth["leak"]}
    conflicts = _pairs(_finding(report, "conflicting_labels")["groups"])
    assert {frozenset(p) for p in truth["conflict"]} <= conflicts
    print("\n" + "\n".join(lines))


def test_report_shape_and_saved_copy(planted):
    report, _ = planted
    assert set(report) >= {"dataset", "score", "created", "seconds", "images_checked", "manifest_digest",
                           "findings", "images"}
    assert 0 <= report["score"] < 100 and isinstance(report["score"], int)
    order = [(health.SEVERITIES.index(f["severity"]), -len(f["images"])) for f in report["findings"]]
    assert order == sorted(order)
    for f in report["findings"]:
        assert f["kind"] in health.KINDS and f["images"] and len(f["scores"]) == len(f["images"])
        assert f["message"].count(".") >= 1 and "{" not in f["message"] and "\n" not in f["message"]
        assert set(f) == {"kind", "severity", "title", "message", "images", "scores", "suggested", "groups", "details"}
        assert f["suggested"] == {} or f["kind"] == "label_error"
        assert f["groups"] == [] or f["kind"] in ("exact_duplicate", "near_duplicate", "leakage", "conflicting_labels")
    assert len(report["images"]) == report["images_checked"]
    assert all(0 <= v["suspicion"] <= 1 for v in report["images"].values())
    flagged = [p for p, v in report["images"].items() if "label_error" in v["kinds"]]
    assert flagged and all(report["images"][p]["suspicion"] > 0 for p in flagged)
    assert health.load("planted") == json.loads(json.dumps(report))
    assert "note" in _finding(report, "leakage")["details"]  # no training run yet: said so, no figure


def test_staleness_follows_label_edits(planted):
    report, _ = planted
    assert not health.is_stale("planted", report)
    folder = workspace.dataset_dir("planted")
    df = workspace.read_manifest("planted")
    before = df.copy()
    df.loc[0, "excluded"] = True
    workspace.write_manifest(folder, df)
    try:
        assert health.is_stale("planted", report)
    finally:
        workspace.write_manifest(folder, before)
    assert not health.is_stale("planted", report)
    assert health.is_stale("planted", None)


# --- simple checks on tiny generated images --------------------------------------------------------


def _blocky(seed: int, size=(48, 48), grey: bool = False, low: int = 0, high: int = 256) -> Image.Image:
    """Random 8×8 blocks enlarged with hard edges: sharp, colourful (unless grey), full contrast."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(low, high, (8, 8) if grey else (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(cells, "L" if grey else "RGB").resize(size, Image.NEAREST)
    return img.convert("RGB")


def _png(img: Image.Image) -> bytes:
    return _encode(img, "PNG")


ODD = {
    "dark.png": _blocky(900, high=50),
    "bright.png": _blocky(901, low=215),
    "flat.png": Image.fromarray(np.random.default_rng(902).integers(120, 126, (48, 48, 3), dtype=np.uint8)),
    "blurry.png": _blocky(903).filter(ImageFilter.GaussianBlur(3)),
    "grey.png": _blocky(904, grey=True),
    "tiny.png": _blocky(905, size=(12, 12)),
    "long.png": _blocky(906, size=(240, 48)),
}
EXPECTED = {"dark.png": "dark", "bright.png": "bright", "flat.png": "low_contrast", "blurry.png": "blurry",
            "grey.png": "grayscale", "tiny.png": "tiny_image", "long.png": "odd_shape"}


def test_simple_checks_on_generated_images(imgcls_home, mk):
    members = [(f"a/{i:02d}.png", _png(_blocky(i))) for i in range(16)]
    members += [(f"b/{i:02d}.png", _png(_blocky(100 + i))) for i in range(16)]
    members += [(f"a/{name}", _png(img)) for name, img in ODD.items()]
    members += [("b/broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")]
    import_zip(mk.zip(members), "odd")
    report = health.check("odd")
    by_source = workspace.read_manifest("odd").set_index("path")["source"].to_dict()
    flagged = {kind: {Path(by_source.get(p, p)).name for p in f["images"]}
               for kind, f in ((f["kind"], f) for f in report["findings"])}
    for name, kind in EXPECTED.items():
        assert name in flagged.get(kind, set()), f"{name} not reported as {kind}: {flagged}"
    normal = {f"{i:02d}.png" for i in range(16)}
    for kind in set(EXPECTED.values()):
        assert not flagged.get(kind, set()) & normal, f"ordinary images reported as {kind}"
    assert flagged["unreadable"] == {"broken.jpg"}
    assert report["images_checked"] == 32 + len(ODD)


def test_size_flags_on_numbers():
    widths, heights = np.array([640, 640, 7000, 20, 2000]), np.array([480, 480, 4000, 20, 300])
    flags = imagestats.size_flags(widths, heights)
    assert list(flags["huge_image"][0]) == [2]
    assert list(flags["tiny_image"][0]) == [3]
    assert list(flags["odd_shape"][0]) == [4]


def test_look_flags_leave_a_dataset_style_alone():
    """A dataset of mostly grey images (X-rays) is not "grayscale" image by image."""
    stats = {"brightness": np.full(20, 0.5), "contrast": np.full(20, 0.2),
             "colour": np.r_[np.zeros(15), np.full(5, 0.3)], "sharpness": np.full(20, 0.01)}
    assert len(imagestats.look_flags(stats)["grayscale"][0]) == 0
    stats["colour"] = np.r_[np.zeros(2), np.full(18, 0.3)]
    assert list(imagestats.look_flags(stats)["grayscale"][0]) == [0, 1]


# --- edge cases ------------------------------------------------------------------------------------


def _kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["findings"]}


@pytest.mark.parametrize("classes", [{"a": 6}, {"a": 6, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 1, "c": 1}])
def test_small_and_lopsided_datasets_do_not_crash(imgcls_home, mk, classes):
    import_zip(mk.zip(mk.class_members(classes)), "small")
    report = health.check("small")
    assert report["images_checked"] == sum(classes.values())
    assert 0 <= report["score"] <= 100
    if classes == {"a": 6, "b": 1}:
        imbalance = _finding(report, "class_imbalance")
        assert len(imbalance["images"]) == 1 and imbalance["details"]["counts"] == {"a": 6, "b": 1}
    json.dumps(report)


def test_all_images_excluded(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "gone")
    df = workspace.read_manifest("gone").assign(excluded=True)
    workspace.write_manifest(workspace.dataset_dir("gone"), df)
    report = health.check("gone")
    assert report["score"] == 100 and report["findings"] == [] and report["images_checked"] == 0
    assert report["message"] and report["images"] == {}


def test_leak_effect_uses_the_latest_evaluated_run(imgcls_home, mk):
    from imgcls.store import runs

    import_zip(mk.zip(mk.class_members({"a": 3})), "leaky")
    for run_id, state in (("20260101-000000-old", "done"), ("20260102-000000-new", "done"),
                          ("20260103-000000-running", "failed"), ("20260104-000000-unevaluated", "done")):
        folder = runs.run_dir(run_id)
        folder.mkdir(parents=True)
        workspace.atomic_write_json(folder / "config.json", {"dataset": "leaky"})
        workspace.atomic_write_json(folder / "status.json", {"state": state})
        (folder / "model.safetensors").write_bytes(b"")
    table = pd.DataFrame({"path": ["x", "y", "z", "w"], "correct": [True, True, False, True]})
    (runs.run_dir("20260102-000000-new") / "predictions-val.csv").write_text(table.to_csv(index=False))
    effect = duplicates.leak_effect("leaky", {"x", "y"})
    assert effect == {"run": "20260102-000000-new", "accuracy": 0.75, "accuracy_without_leaks": 0.5,
                      "leaked_val_images": 2}
    assert "note" in duplicates.leak_effect("other", {"x"})


# --- the command line ------------------------------------------------------------------------------


def _cli(home: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], cwd=home.parent, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def test_cli_health(imgcls_home, mk, capsys):
    from imgcls.cli import main

    import_zip(mk.zip(mk.class_members({"a": 5, "b": 5})), "cli")
    done = _cli(imgcls_home, "health", "cli", "--json")  # as a user runs it, in a process of its own
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(out["score"], int) and isinstance(out["findings"], list)
    assert health.load("cli")["score"] == out["score"]
    assert main(["health", "cli"]) == 0  # the rest in this process: starting Python and torch takes seconds
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("Health of 'cli': ") and len(text) == 1 + max(len(out["findings"]), 1)
    assert main(["health", "nothing-here"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgcls: ")


# --- the check as a background job ---------------------------------------------------------------


def _wait_for_job(name: str, timeout: float = 120.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = healthjob.job_status(name)
        if status.get("state") not in ("queued", "running"):
            return status
        time.sleep(0.2)
    healthjob.stop_job(name)
    raise AssertionError(f"the background check did not finish in {timeout} s: {healthjob.job_status(name)}")


def test_background_check_runs_and_saves_the_report(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "d")
    assert healthjob.job_status("d") == {}
    healthjob.start("d")
    first = healthjob.job_status("d")
    assert first["state"] in ("queued", "running") and first["pid"] and first["created"]
    healthjob.start("d")  # a second start while one runs is refused quietly
    assert healthjob.job_status("d")["pid"] == first["pid"]
    status = _wait_for_job("d")
    log = (workspace.dataset_dir("d") / healthjob.LOG_FILE).read_text(encoding="utf-8", errors="replace")
    assert status["state"] == "done", (status, log)
    assert status["progress"] == 1.0 and status["finished"] >= status["started"]
    report = health.load("d")
    assert report and report["images_checked"] == 12 and not health.is_stale("d", report)


def test_a_running_check_whose_process_vanished_reads_as_interrupted(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "d")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    workspace.atomic_write_json(workspace.dataset_dir("d") / healthjob.STATUS_FILE,
                                {"state": "running", "progress": 0.3, "message": "Reading images",
                                 "pid": gone.pid, "started": 0})
    status = healthjob.job_status("d")
    assert status["state"] == "interrupted" and "stopped unexpectedly" in status["message"]
    assert healthjob.stop_job("d")["state"] == "interrupted"  # nothing to stop


def test_a_failing_job_writes_a_plain_message(imgcls_home, mk, monkeypatch):
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "d")

    def broken(name, **kw):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore details")

    monkeypatch.setattr(health, "check", broken)
    (workspace.dataset_dir("d") / healthjob.LOG_FILE).write_text("")
    with pytest.raises(RuntimeError):
        healthjob.run_job("d")
    status = healthjob.job_status("d")
    assert status["state"] == "failed" and "ran out of memory" in status["message"]
    assert "\n" not in status["message"] and healthjob.LOG_FILE in status["message"]
    assert "Traceback" in (workspace.dataset_dir("d") / healthjob.LOG_FILE).read_text()


def test_stop_job_ends_the_check(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "d")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    workspace.atomic_write_json(workspace.dataset_dir("d") / healthjob.STATUS_FILE,
                                {"state": "running", "progress": 0.1, "message": "x", "pid": sleeper.pid,
                                 "started": 0})
    try:
        assert healthjob.job_status("d")["state"] == "running"
        assert healthjob.stop_job("d")["state"] == "cancelled"
        assert sleeper.wait(timeout=10) is not None
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_is_stale_answers_from_the_file_stamp_and_else_from_the_content(imgcls_home, mk):
    from imgcls.store import journal

    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "st")
    df = workspace.read_manifest("st")
    report = {"version": versions.dataset_version("st", df), "manifest_stamp": health._stamp("st")}
    assert not health.is_stale("st", report)
    assert not health.is_stale("st", {**report, "version": {"digest": "not read"}})  # untouched file: no read
    journal.edit("st", "exclude", [df["path"].iloc[0]])
    assert health.is_stale("st", report)
    journal.undo("st")  # the file changed, its content is back: not stale
    assert not health.is_stale("st", report)
    assert health.is_stale("st", None)


def test_after_an_edit_staleness_is_one_read_of_the_rows_fingerprint(imgcls_home, mk, monkeypatch):
    from imgcls.store import journal, rowdigest

    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "fp")
    df = workspace.read_manifest("fp")
    report = {"manifest_stamp": health._stamp("fp"), "rows_fingerprint": rowdigest.fingerprint("fp")}
    monkeypatch.setattr(rowdigest, "digest", lambda *a: pytest.fail("the whole digest was computed"))
    journal.edit("fp", "relabel", [df["path"].iloc[0]], "b" if df["label"].iloc[0] == "a" else "a")
    assert health.is_stale("fp", report)
    journal.undo("fp")
    assert not health.is_stale("fp", report)


def test_reading_a_report_loads_no_torch():
    """Pages read reports on every click; with torch in the server every script run's clean-up is slower."""
    code = ("import sys; import imgcls.health.check, imgcls.health.report, imgcls.ui.review.health, imgcls.ui.review.groups; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_label_error_suspicion_follows_its_score(planted):
    report, _ = planted
    finding = _finding(report, "label_error")
    only = [(s, report["images"][p]["suspicion"]) for p, s in zip(finding["images"], finding["scores"])
            if report["images"][p]["kinds"] == ["label_error"]]
    assert len(only) >= 5
    ranks = sorted(only, key=lambda pair: -pair[0])
    assert [v for _, v in ranks] == sorted((v for _, v in only), reverse=True)  # the same order …
    assert len({v for _, v in only}) > len(only) // 2  # … and not one flat value for all
    assert all(v == pytest.approx(health.WEIGHT["high"] * s, abs=1e-3) for s, v in only)
