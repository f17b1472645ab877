"""Review page, copies side by side and the ranking of suspicious images: every member of a copy group is
shown with its split, label and edits; label-error cards are ordered, across classes, by the score they show;
the numbers behind a finding are sentences."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.health import duplicates, check as health
from imgcls.store import journal, versions, workspace
from imgcls.ingest.imports import import_zip
from imgcls.ui.common import nav
from imgcls.ui.review import health as review_health
from imgcls.ui.review.groups import GROUPS_PER_PAGE, member_key

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 60

pytestmark = pytest.mark.usefixtures("app_home")


def _rows(name="d"):
    return workspace.read_manifest(name).set_index("path")


def _finding(kind, severity, images, scores, groups=(), **extra) -> dict:
    return {"kind": kind, "severity": severity, "title": health.KINDS[kind][1], "message": f"{kind} message.",
            "images": list(images), "scores": list(scores), "groups": [list(g) for g in groups],
            "suggested": {}, "details": {}, **extra}


def _save(name: str, findings: list[dict]) -> dict:
    """A saved report over the dataset as it is, its per-image summary made by the health module itself."""
    df = workspace.read_manifest(name)
    images = health.per_image(findings, list(df["path"]))
    for row in df.itertuples(index=False):
        images[row.path].update(label=row.label, split=row.split)
    report = {"dataset": name, "format": health.FORMAT, "score": 60, "created": "2025-01-02T03:04:05",
              "seconds": 1.0, "images_checked": len(df), "version": versions.dataset_version(name, df),
              "findings": findings, "images": images}
    workspace.atomic_write_json(workspace.dataset_dir(name) / "health.json", report)
    return report


@pytest.fixture
def copies(mk):
    """Dataset 'd' (a: 6, b: 14) with a leak group (a training image and a validation one), a label conflict
    (an 'a' and a 'b' image) and five exact-copy groups, as a saved report; (report, names of the members)."""
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 14})), "d")
    workspace.save_setting("active_dataset", "d")
    df = workspace.read_manifest("d")
    train = df[(df["label"] == "a") & (df["split"] == "train")]["path"].tolist()
    held = df[(df["label"] == "a") & (df["split"] != "train")]["path"].tolist()
    assert train and held, "the seeded split of 12 images keeps train and held-out images of class a"
    b_img = df[df["label"] == "b"]["path"].tolist()
    leak = [train[0], held[0]]
    conflict = [train[-1], b_img[0]]
    pairs = [b_img[i:i + 2] for i in range(1, 11, 2)]  # five groups of two, none sharing an image
    findings = [_finding("leakage", "high", [held[0]], [1.0], [leak]),
                _finding("conflicting_labels", "high", conflict, [1.0, 1.0], [conflict],
                         details={"labels": [["a", "b"]]}),
                _finding("exact_duplicate", "medium", [p for g in pairs for p in g], [1.0] * 10, pairs)]
    return _save("d", findings), {"train": train[0], "held": held[0], "conflict": conflict, "pairs": pairs}


def open_review() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(nav.REVIEW.path).run()
    return at


def _open(at: AppTest, kind: str) -> AppTest:
    order = [f["kind"] for f in review_health.ranked(health.load("d")["findings"])]  # as the page lists them
    return at.button(key=f"review.finding.{order.index(kind)}.groups").click().run()


def test_a_leak_group_shows_the_training_copy_beside_the_held_out_one(copies):
    _, names = copies
    at = _open(open_review(), "leakage")
    text = [m.value for m in at.markdown]
    assert any("1 group side by side" in t for t in text)
    train, held = names["train"], names["held"]
    # both members, each with its own edits: the training copy the user is told about is on screen
    for path in (train, held):
        assert at.button(key=member_key("leakage", path, "exclude")).label == "Exclude"
    assert at.button(key=member_key("leakage", held, "move.train")).label == "Move to train"
    with pytest.raises(KeyError):  # no "move to train" on the one already there
        at.button(key=member_key("leakage", train, "move.train"))
    source = _rows().loc[train, "source"]
    assert any(Path(source).name in t and "Train" in t for t in text)
    assert any("Training copy" in c.value for c in at.caption)
    assert any("Held out" in c.value for c in at.caption)
    assert not any("settled" in t for t in text)
    at.button(key=member_key("leakage", held, "move.train")).click().run()
    assert _rows().at[held, "split"] == "train"
    assert any("settled" in m.value for m in at.markdown)  # both copies now train: nothing leaks
    assert any("Moved 1 image" in s.value for s in at.success)
    assert any("edited the dataset since" in w.value for w in at.warning)  # the whole page saw the edit
    at.button(key="review.undo").click().run()
    assert _rows().at[held, "split"] != "train"
    assert not any("settled" in m.value for m in at.markdown)
    assert not at.exception


def test_a_conflict_is_settled_by_relabelling_one_member_from_its_tile(copies):
    _, names = copies
    a_img, b_img = names["conflict"]
    at = _open(open_review(), "conflicting_labels")
    box = at.selectbox(key=member_key("conflicting_labels", a_img, "label"))
    assert box.value is None and box.options == ["b"]  # the other classes, not its own
    box.set_value("b").run()
    assert _rows().at[a_img, "label"] == "b"
    assert at.selectbox(key=member_key("conflicting_labels", a_img, "label")).value is None
    assert any("settled" in m.value for m in at.markdown)
    at.button(key=member_key("conflicting_labels", b_img, "exclude")).click().run()
    assert bool(_rows().at[b_img, "excluded"])
    assert at.button(key=member_key("conflicting_labels", b_img, "exclude")).label == "Restore"
    assert any("excluded" in m.value for m in at.markdown)
    assert [e["action"] for e in journal.history("d")] == ["relabel", "exclude"]
    assert not at.exception


def test_groups_come_a_page_at_a_time_and_close(copies):
    _, names = copies
    at = _open(open_review(), "exact_duplicate")
    first, last = names["pairs"][0], names["pairs"][-1]
    assert len(names["pairs"]) > GROUPS_PER_PAGE
    at.button(key=member_key("exact_duplicate", first[0], "exclude"))
    with pytest.raises(KeyError):
        at.button(key=member_key("exact_duplicate", last[0], "exclude"))
    at.pagination(key="review.groups.page.d").set_value(2).run()
    assert at.button(key=member_key("exact_duplicate", last[1], "exclude"))
    at.button(key="review.groups.close").click().run()
    with pytest.raises(KeyError):
        at.button(key=member_key("exact_duplicate", last[1], "exclude"))
    assert not at.exception


def test_label_error_cards_are_ranked_across_classes_by_the_score_they_show(mk):
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "d")
    workspace.save_setting("active_dataset", "d")
    df = workspace.read_manifest("d").sort_values("label")
    paths = df["path"].tolist()  # manifest order follows class: the old order of equal suspicions
    scores = {paths[0]: 0.676, paths[1]: 0.80, paths[6]: 0.946, paths[7]: 0.72}
    ranked = sorted(scores, key=scores.get, reverse=True)  # as the check lists them: most suspicious first
    _save("d", [_finding("label_error", "high", ranked, [scores[p] for p in ranked],
                         suggested={p: "b" for p in ranked})])
    at = open_review()
    tiles = [c.key[len("review.pick."):] for c in at.checkbox if c.key.startswith("review.pick.")]
    assert tiles[:4] == ranked  # 0.946 (class b) first, 0.676 (class a) last
    shown = [float(m.group(1)) for c in at.caption for m in [re.search(r"suspicion (\d\.\d\d)", c.value)] if m]
    assert len(shown) == 4 and shown == sorted(shown, reverse=True) and len(set(shown)) == 4
    assert shown[0] == pytest.approx(health.WEIGHT["high"] * 0.946, abs=0.005)
    assert not at.exception


def test_an_older_report_is_ranked_by_its_scores_when_read(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "old")
    paths = workspace.read_manifest("old")["path"].tolist()
    finding = _finding("label_error", "high", [paths[4], paths[0]], [0.95, 0.6])
    flat = {p: {"suspicion": 0.8 if p in finding["images"] else 0.0,
                "kinds": ["label_error"] if p in finding["images"] else []} for p in paths}
    workspace.atomic_write_json(workspace.dataset_dir("old") / "health.json", {"findings": [finding], "images": flat})
    images = health.load("old")["images"]
    assert images[paths[4]]["suspicion"] > images[paths[0]]["suspicion"] > 0


def test_copy_groups_are_settled_by_what_their_members_are_now():
    def m(split="train", label="a", excluded=False):
        return {"split": split, "label": label, "excluded": excluded}

    assert not duplicates.group_settled("leakage", [m(), m("val")])
    assert duplicates.group_settled("leakage", [m(), m("val", excluded=True)])
    assert duplicates.group_settled("leakage", [m(), m()])
    assert not duplicates.group_settled("conflicting_labels", [m(), m(label="b")])
    assert duplicates.group_settled("conflicting_labels", [m(), None, m(label="b", excluded=True)])
    assert not duplicates.group_settled("exact_duplicate", [m(), m()])
    assert duplicates.group_settled("exact_duplicate", [m(), m(excluded=True)])


def test_finding_numbers_read_as_sentences():
    error = _finding("label_error", "high", ["x", "y"], [0.95, 0.6], details={"left_out": 3})
    words = health.explain(error)
    assert "gives its current label 5% to 40% chance" in words and "3 images could not be checked" in words
    leak = _finding("leakage", "high", ["v"], [1.0], [["t", "v"]],
                    details={"by_split": {"val": 1, "test": 0}, "run": "r1", "accuracy": 0.9,
                             "accuracy_without_leaks": 0.85})
    assert health.explain(leak) == ("1 picture appears both in training and in validation or test. Of the copies "
                                    "to act on, 1 in validation. "
                                    "Run r1 scored 90.0% on validation; without these copies it scores 85.0%, "
                                    "the fairer figure.")
    for finding in (error, leak, _finding("near_duplicate", "low", ["p", "q"], [0.9, 0.9], [["p", "q"]],
                                          details={"pairs": 1})):
        assert "_" not in health.explain(finding)
