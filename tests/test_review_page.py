"""AppTest of the Review page: health summary and findings, gallery filters, bulk edits, undo/redo,
one-at-a-time mode, selections kept across pages, purge and exports."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.store import journal, workspace
from imgcls.ingest.imports import import_zip
from imgcls.ui.common import nav
from imgcls.ui.review.gallery import NEW_CLASS
from imgcls.ui.common.text import plain
from apphelpers import metric

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
REVIEW = nav.REVIEW.path
TIMEOUT = 60  # the first run imports pandas and plotly

pytestmark = pytest.mark.usefixtures("app_home")


@pytest.fixture
def dataset(mk):
    """A dataset 'd' of two classes, six images each, made active."""
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "d")
    workspace.save_setting("active_dataset", "d")
    return "d"


def manifest(name="d"):
    return workspace.read_manifest(name).set_index("path")


def a_report(name="d") -> dict:
    """A hand-made health report in the agreed shape: a label error, a blur, an imbalance, unreadable files."""
    df = workspace.read_manifest(name)
    a = list(df[df["label"] == "a"]["path"])
    findings = [
        {"kind": "blurry", "severity": "low", "title": "Blurry images", "message": "1 image looks blurry.",
         "images": [a[5]], "scores": [0.4], "details": {"threshold": 12.5}},
        {"kind": "label_error", "severity": "high", "title": "Possible label errors",
         "message": "2 images may carry the wrong label.", "images": [a[1], a[0]], "scores": [0.9, 0.7],
         "suggested": {a[0]: "b", a[1]: "b"}},
        {"kind": "unreadable", "severity": "medium", "title": "Unreadable files",
         "message": "1 file could not be read.", "images": ["a/broken.png"], "scores": [1.0]},
        {"kind": "class_imbalance", "severity": "medium", "title": "Unbalanced classes",
         "message": "Class b has few images.", "images": [], "details": {"ratio": 3.0}},
    ]
    return {
        "dataset": name, "score": 72, "created": "2025-01-02T03:04:05", "seconds": 1.5, "images_checked": len(df),
        "findings": [{"scores": [], "suggested": {}, "groups": [], "details": {}, **f} for f in findings],
        "images": {a[1]: {"suspicion": 0.9, "kinds": ["label_error"]},
                   a[0]: {"suspicion": 0.7, "kinds": ["label_error"]},
                   a[5]: {"suspicion": 0.4, "kinds": ["blurry"]}},
    }


@pytest.fixture
def fake_health(monkeypatch):
    """health.load/check/start/is_stale replaced by a stand-in that keeps its report in memory; its start
    runs the check at once, in this process, and leaves a finished job status behind."""
    from imgcls.health import check as health, job as healthjob

    saved = {}

    def check(name, *, progress=None, device="cpu"):
        for i in range(3):
            if progress:
                progress(i / 3, f"step {i}")
        saved[name] = a_report(name)
        return saved[name]

    def start(name, device="cpu"):
        check(name)
        workspace.atomic_write_json(workspace.dataset_dir(name) / healthjob.STATUS_FILE,
                                    {"state": "done", "progress": 1.0, "message": "Finished", "pid": None,
                                     "started": 0, "finished": 1})

    monkeypatch.setattr(health, "check", check)
    monkeypatch.setattr(healthjob, "start", start)
    monkeypatch.setattr(health, "load", lambda name: saved.get(name), raising=False)
    monkeypatch.setattr(health, "is_stale", lambda name, report: bool(journal.history(name)), raising=False)
    return saved


def open_review() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(REVIEW).run()
    return at


def tick(at: AppTest, *paths) -> AppTest:
    for path in paths:
        at.checkbox(key=f"review.pick.{path}").check().run()
    return at


def apply(at: AppTest, action: str, **values) -> AppTest:
    at.radio(key="review.bulk.action").set_value(action).run()
    for key, value in values.items():
        texts = ("review.bulk.new_label", "review.bulk.note")
        widget = at.text_input(key=key) if key in texts else at.selectbox(key=key)
        widget.set_value(value).run()
    return at.button(key="review.bulk.apply").click().run()


def open_expander(at: AppTest, key: str) -> AppTest:
    """Open an expander that draws its content only while open (as a click on it does)."""
    at.session_state[key] = True
    return at.run()


def captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


# --- rendering ---------------------------------------------------------------------------------------------


def test_without_a_dataset_the_page_points_to_data():
    at = open_review()
    assert at.title[0].value == "Review"
    assert any("Data page" in i.value for i in at.info)
    assert not at.exception


def test_a_dataset_never_checked_offers_the_check(dataset, fake_health):
    at = open_review()
    assert at.button(key="review.check").label == "Check my dataset"
    assert any("duplicates" in m.value for m in at.markdown)
    assert len(at.image) == 12 and len(at.checkbox) == 12
    assert not at.error
    at.button(key="review.check").click().run()
    assert "d" in fake_health
    assert metric(at, "Health score") == "72/100"
    assert not at.exception


def test_health_summary_ranks_findings_and_filters_the_gallery(dataset, fake_health):
    fake_health["d"] = report = a_report()
    at = open_review()
    assert metric(at, "Health score") == "72/100"
    assert [m.delta for m in at.metric if m.label == "Health score"] == ["fair"]
    assert metric(at, "Images checked") == "12"
    titles = [m.value for m in at.main.markdown if m.value.startswith(":material/")]
    assert [t.split("**")[1] for t in titles] == ["Possible label errors", "Unreadable files",
                                                 "Unbalanced classes", "Blurry images"]
    assert any("a/broken.png" in c.value for c in at.caption)  # unreadable files are named, not filtered
    # the numbers behind a finding as a sentence, never as raw keys ("threshold 12.5", "left out images 0")
    assert any("gives its current label 10% to 30% chance" in c.value for c in at.caption)
    assert not any("threshold" in c.value or "left out images" in c.value for c in at.caption)
    assert not any("edited the dataset since" in w.value for w in at.warning)
    first = [c for c in captions(at)][:3]
    label_errors = report["findings"][1]["images"]
    assert all("maybe b" in c for c in first[:2]) and "maybe" not in first[2]  # most suspicious first
    at.button(key="review.finding.0").click().run()  # "Show them" on the label errors
    assert at.selectbox(key="review.filter.finding.d").value == "label_error"
    assert len(at.image) == 2
    assert [f"review.pick.{p}" for p in label_errors] == [c.key for c in at.checkbox if c.key.startswith("review.pick")]
    at.button(key="review.filter.clear").click().run()
    assert at.selectbox(key="review.filter.finding.d").value == "" and len(at.image) == 12
    assert not at.exception


def test_stale_report_says_so(dataset, fake_health):
    fake_health["d"] = a_report()
    first = workspace.read_manifest("d")["path"][0]
    journal.edit("d", "exclude", [first])
    at = open_review()
    assert any("edited the dataset since" in w.value for w in at.warning)
    assert not at.exception


# --- edits ---------------------------------------------------------------------------------------------------


def test_relabel_to_a_new_class_then_undo_and_redo(dataset):
    path = workspace.read_manifest("d")["path"][0]
    at = tick(open_review(), path)
    assert any("1 selected" in m.value for m in at.markdown)
    at = apply(at, "relabel", **{"review.bulk.label": NEW_CLASS, "review.bulk.new_label": "zebra"})
    assert manifest().at[path, "label"] == "zebra"
    assert [e["action"] for e in journal.history("d")] == ["relabel"]
    assert any("Relabelled 1 image" in s.value for s in at.success)
    assert not at.checkbox(key=f"review.pick.{path}").value  # the selection is cleared after an edit
    assert at.button(key="review.undo").label == "Undo: relabel 1 image as 'zebra'"
    assert at.button(key="review.redo").disabled
    at.button(key="review.undo").click().run()
    assert manifest().at[path, "label"] == "a"
    assert at.button(key="review.redo").label == "Redo: relabel 1 image as 'zebra'"
    at.button(key="review.redo").click().run()
    assert manifest().at[path, "label"] == "zebra"
    assert [e["action"] for e in journal.history("d")] == ["relabel", "undo", "redo"]
    assert not any("redo of edit #1" in m.value for m in at.markdown)  # closed: not drawn at all
    open_expander(at, "review.history")  # the history lists every entry, newest first
    assert any("redo of edit #1" in m.value for m in at.markdown)
    assert not at.exception


def test_a_tab_that_saw_an_older_label_is_told_instead_of_overwriting(dataset):
    path = workspace.read_manifest("d")["path"][0]
    first = tick(open_review(), path)  # this tab shows the image as 'a'
    journal.edit("d", "relabel", [path], "b", expect={path: "a"})  # another tab relabels it meanwhile
    first = apply(first, "relabel", **{"review.bulk.label": NEW_CLASS, "review.bulk.new_label": "zebra"})
    assert manifest().at[path, "label"] == "b"  # the other tab's edit stands
    assert len(first.error) == 1 and "was changed to 'b' in another tab" in first.error[0].value
    assert [e["action"] for e in journal.history("d")] == ["relabel"]
    assert not first.exception


def test_relabel_to_an_existing_class_of_several_images(dataset):
    paths = list(workspace.read_manifest("d")["path"][:3])
    at = tick(open_review(), *paths)
    at = apply(at, "relabel", **{"review.bulk.label": "b"})
    assert list(manifest().loc[paths, "label"]) == ["b"] * 3
    assert not at.exception


def test_an_empty_label_is_refused_and_changes_nothing(dataset):
    path = workspace.read_manifest("d")["path"][0]
    at = tick(open_review(), path)
    at = apply(at, "relabel", **{"review.bulk.label": NEW_CLASS, "review.bulk.new_label": "   "})
    assert len(at.error) == 1 and "needs a name" in at.error[0].value
    assert manifest().at[path, "label"] == "a" and journal.history("d") == []
    assert at.checkbox(key=f"review.pick.{path}").value  # still selected, to try again
    at.button(key="review.bulk.apply").click().run()
    assert not at.exception


def test_exclude_hides_and_restore_brings_back(dataset):
    path = workspace.read_manifest("d")["path"][0]
    at = apply(tick(open_review(), path), "exclude")
    assert bool(manifest().at[path, "excluded"])
    assert f"review.pick.{path}" not in [c.key for c in at.checkbox]  # hidden by default
    at.selectbox(key="review.filter.excluded.d").set_value("only").run()
    assert [c.key for c in at.checkbox if c.key.startswith("review.pick")] == [f"review.pick.{path}"]
    assert "excluded" in captions(at)[0]
    at = apply(tick(at, path), "restore")
    assert not bool(manifest().at[path, "excluded"])
    assert any("No images match" in i.value for i in at.info)
    assert not at.exception


def test_move_to_another_split_and_add_a_note(dataset):
    df = workspace.read_manifest("d")
    path = df[df["split"] != "test"]["path"].iloc[0]
    at = apply(tick(open_review(), path), "move", **{"review.bulk.split": "test"})
    assert manifest().at[path, "split"] == "test"
    at = apply(tick(at, path), "note", **{"review.bulk.note": "taken at night"})
    assert manifest().at[path, "note"] == "taken at night"
    assert not at.exception


def test_select_all_on_the_page_and_clear(dataset):
    at = open_review()
    at.button(key="review.select_page").click().run()
    assert all(c.value for c in at.checkbox if c.key.startswith("review.pick"))
    assert any("12 selected" in m.value for m in at.markdown)
    at.button(key="review.clear").click().run()
    assert not any(c.value for c in at.checkbox if c.key.startswith("review.pick"))
    assert not at.exception


def test_pages_of_24(mk):
    import_zip(mk.zip(mk.class_members({"a": 20, "b": 10})), "d")
    workspace.save_setting("active_dataset", "d")
    at = open_review()
    assert len(at.image) == 24
    at.pagination(key="review.page.d").set_value(2).run()
    assert len(at.image) == 6
    assert any("Images 25–30 of 30" in c.value for c in at.caption)
    at.selectbox(key="review.filter.class.d").set_value("b").run()  # a new filter starts on page 1
    assert len(at.image) == 10
    assert not at.exception


def test_selection_and_filters_survive_a_visit_to_another_page(dataset):
    df = workspace.read_manifest("d")
    path = df[df["label"] == "b"]["path"].iloc[0]
    at = open_review()
    at.selectbox(key="review.filter.class.d").set_value("b").run()
    tick(at, path)
    at.switch_page(nav.DATA.path).run()
    at.switch_page(REVIEW).run()
    assert at.selectbox(key="review.filter.class.d").value == "b"
    assert at.checkbox(key=f"review.pick.{path}").value
    assert len(at.image) == 6
    assert not at.exception


def test_one_at_a_time_assigns_a_class_and_moves_on(dataset, fake_health):
    fake_health["d"] = a_report()
    at = open_review()
    at.segmented_control(key="review.mode").set_value("one").run()
    first, second = fake_health["d"]["findings"][1]["images"]  # the most suspicious two
    assert at.session_state["review.one.d"] == first
    assert any("may be **b**" in m.value for m in at.markdown)
    assert any("gives its current label 10% chance" in c.value for c in at.caption)  # its own score, in words
    assert not any("(score " in c.value for c in at.caption)
    at.button(key="review.one.assign.b").click().run()
    assert manifest().at[first, "label"] == "b"
    assert at.session_state["review.one.d"] == second
    at.button(key="review.one.exclude").click().run()
    assert bool(manifest().at[second, "excluded"])
    at.button(key="review.one.previous").click().run()
    assert at.session_state["review.one.d"] == first
    assert not at.exception


def test_undo_refuses_when_another_tab_made_a_newer_edit(dataset):
    first, second = list(workspace.read_manifest("d")["path"][:2])
    journal.edit("d", "exclude", [first])
    at = open_review()
    assert at.button(key="review.undo").label == "Undo: exclude 1 image"
    journal.edit("d", "relabel", [second], "b")  # from another tab, after this page was drawn
    at.button(key="review.undo").click().run()
    assert any("Another edit was made meanwhile" in e.value for e in at.error)
    assert manifest().at[second, "label"] == "b" and bool(manifest().at[first, "excluded"])  # nothing undone
    assert at.button(key="review.undo").label == "Undo: relabel 1 image as 'b'"  # now it names the newer one
    at.button(key="review.undo").click().run()
    assert manifest().at[second, "label"] == "a"
    assert not at.exception


def test_a_workspace_error_in_an_edit_is_a_plain_message(dataset, monkeypatch):
    busy = workspace.WorkspaceError("The dataset is busy with an import; try again in a moment.")

    def refuse(*args, **kwargs):
        raise busy

    path = workspace.read_manifest("d")["path"][0]
    journal.edit("d", "exclude", [path])
    at = open_review()
    for name in ("edit", "undo", "purge_excluded"):
        monkeypatch.setattr(journal, name, refuse)
    at = apply(tick(at, workspace.read_manifest("d")["path"][1]), "exclude")
    assert [e.value for e in at.error] == [str(busy)]
    at.button(key="review.undo").click().run()
    assert [e.value for e in at.error] == [str(busy)]
    open_expander(at, "review.purge_open").checkbox(key="review.purge.confirm.d").check().run()
    at.button(key="review.purge").click().run()
    assert [e.value for e in at.error] == [str(busy)] and (workspace.dataset_dir("d") / path).exists()
    assert not at.exception


def test_notes_and_labels_are_shown_as_typed_not_as_markdown(dataset):
    path = workspace.read_manifest("d")["path"][0]
    note = "![x](http://h/x.png) *bold*"
    journal.edit("d", "note", [path], note)
    journal.edit("d", "relabel", [path], ":red[$x$]")
    at = open_review()
    shown = r"\!\[x\]\(http\://h/x.png\) \*bold\*"
    assert any(f"note: {shown}" in c.value for c in at.caption)  # under the thumbnail
    open_expander(at, "review.history")
    assert any(shown in m.value for m in at.markdown)  # the history of edits
    assert at.button(key="review.undo").label == r"Undo: relabel 1 image as '\:red\[\$x\$\]'"
    at.segmented_control(key="review.mode").set_value("one").run()
    at.session_state["review.one.d"] = path
    at.run()
    details = [m.value for m in at.markdown if "Note:" in m.value]
    assert details and f"Note: {shown}" in details[0] and r"Label **\:red\[\$x\$\]**" in details[0]
    values = [e.value for e in [*at.markdown, *at.caption]] + [b.label for b in at.button]
    assert not any("![x](" in v or ":red[" in v for v in values)
    assert not at.exception


# --- share and export --------------------------------------------------------------------------------------


def test_purge_asks_first_then_deletes_the_excluded_files(dataset):
    path = workspace.read_manifest("d")["path"][0]
    journal.edit("d", "exclude", [path])
    at = open_expander(open_review(), "review.purge_open")
    assert at.button(key="review.purge").disabled
    at.checkbox(key="review.purge.confirm.d").check().run()
    assert "cannot be undone" in at.checkbox(key="review.purge.confirm.d").label
    at.button(key="review.purge").click().run()
    assert path not in manifest().index
    assert not (workspace.dataset_dir("d") / path).exists()
    assert any("Deleted 1 image" in s.value for s in at.success)
    assert not at.exception


def test_purge_deletes_only_the_images_it_counted(dataset):
    first, second = list(workspace.read_manifest("d")["path"][:2])
    journal.edit("d", "exclude", [first])
    at = open_expander(open_review(), "review.purge_open")
    at.checkbox(key="review.purge.confirm.d").check().run()
    assert at.button(key="review.purge").label == "Empty the excluded images (1)"
    journal.edit("d", "exclude", [second])  # another tab excludes one more before the click
    at.button(key="review.purge").click().run()
    assert first not in manifest().index and not (workspace.dataset_dir("d") / first).exists()
    assert bool(manifest().at[second, "excluded"]) and (workspace.dataset_dir("d") / second).exists()
    assert any("Deleted 1 image." in s.value for s in at.success)
    assert not at.exception


def test_a_report_made_before_later_edits_says_so_by_its_download(dataset, fake_health):
    fake_health["d"] = a_report()
    at = open_review()
    assert not any("made before later edits" in c.value for c in at.caption)
    journal.edit("d", "exclude", [workspace.read_manifest("d")["path"][0]])
    at.run()
    assert any("made before later edits; check again for an up-to-date report" in c.value for c in at.caption)
    assert not at.exception


def test_download_buttons_make_their_files_on_click(dataset, fake_health):
    import io
    import zipfile

    from imgcls.ui.review import export as review_export

    at = open_review()
    buttons = {b.key: b for b in at.get("download_button")}
    assert set(buttons) == {"review.download.report", "review.download.zip", "review.download.journal"}
    assert buttons["review.download.report"].proto.disabled  # nothing to report before a check
    fake_health["d"] = a_report()
    at.run()
    report_button = {b.key: b for b in at.get("download_button")}["review.download.report"]
    assert report_button.proto.disabled == (not review_export._available("health.report"))
    if review_export._available("health.report"):
        assert "<html" in review_export._report_html("d").lower()
    if review_export._available("ingest.archive"):
        with zipfile.ZipFile(io.BytesIO(review_export._dataset_zip("d"))) as zf:
            assert "manifest.csv" in zf.namelist()
    assert not at.exception


def wait_for_check(name="d", timeout=120) -> dict:
    from imgcls.health import job as healthjob

    deadline = time.monotonic() + timeout
    while healthjob.job_status(name).get("state") in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    status = healthjob.job_status(name)
    if status.get("state") in ("queued", "running"):
        healthjob.stop_job(name)
    return status


def test_the_real_health_check_runs_in_the_background(dataset):
    from imgcls.health import check as health, job as healthjob

    at = open_review()
    at.button(key="review.check").click().run()
    assert not at.exception
    try:
        status = healthjob.job_status("d")
        assert (workspace.dataset_dir("d") / healthjob.STATUS_FILE).exists() and status["pid"]
        if status["state"] in ("queued", "running"):  # drawn while it runs: the live view, no second start
            assert at.get("progress") and not [b for b in at.button if b.key == "review.check"]
            assert at.button(key="review.check.stop").label == "Stop the check"
            assert len(at.image) == 12  # the gallery stays usable meanwhile
    finally:
        status = wait_for_check()
    log = (workspace.dataset_dir("d") / healthjob.LOG_FILE).read_text(encoding="utf-8", errors="replace")
    assert status["state"] == "done", (status, log)
    at.run()
    saved = health.load("d")
    assert saved and metric(at, "Health score") == f"{saved['score']}/100"
    assert at.button(key="review.check").label == "Check again"
    assert not at.get("progress")
    assert not any("edited the dataset since" in w.value for w in at.warning)
    journal.edit("d", "exclude", [workspace.read_manifest("d")["path"][0]])
    at.run()
    assert any("edited the dataset since" in w.value for w in at.warning)
    assert not at.exception


@pytest.fixture
def sleeper():
    """A process that stands in for a running check, ended afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def write_status(name="d", **fields):
    from imgcls.health import job as healthjob

    workspace.atomic_write_json(workspace.dataset_dir(name) / healthjob.STATUS_FILE,
                                {"progress": 0.0, "message": "", "pid": None, "started": time.time(), **fields})


def test_a_running_check_shows_its_progress_after_a_refresh_and_can_be_stopped(dataset, fake_health, sleeper):
    fake_health["d"] = a_report()  # an older report stays on show while the new check runs
    write_status(state="running", progress=0.4, message="Reading images (5 of 12)", pid=sleeper.pid)
    at = open_review()  # a fresh session, as after a browser refresh
    [bar] = at.get("progress")
    assert bar.proto.text == "40% done · " + plain("Reading images (5 of 12)") and bar.proto.value == 40
    assert metric(at, "Health score") == "72/100"
    assert at.button(key="review.check").disabled  # no second check while one runs
    at.switch_page(nav.DATA.path).run()
    at.switch_page(REVIEW).run()
    assert len(at.get("progress")) == 1  # still there on coming back
    at.button(key="review.check.stop").click().run()
    assert sleeper.wait(timeout=10) is not None
    from imgcls.health import job as healthjob

    assert healthjob.job_status("d")["state"] == "cancelled"
    assert not at.get("progress") and not at.button(key="review.check").disabled
    assert not at.exception


def test_a_failed_check_says_why(dataset, fake_health):
    write_status(state="failed", message="The check stopped with an error: disk full.")
    at = open_review()
    assert [e.value for e in at.error] == ["The check stopped with an error: disk full."]
    assert at.button(key="review.check").label == "Check my dataset" and not at.get("progress")
    at.button(key="review.check").click().run()  # checking again clears it
    assert metric(at, "Health score") == "72/100" and not at.error
    assert not at.exception


def test_a_check_whose_process_vanished_reads_as_failed(dataset, fake_health):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_status(state="running", progress=0.2, message="Reading images", pid=gone.pid, started=0)
    at = open_review()
    assert not at.get("progress")
    assert any("stopped unexpectedly" in e.value for e in at.error)
    assert at.button(key="review.check").label == "Check my dataset"
    assert not at.exception
