"""Stale edits: a page that shows an image's value passes it as `expect`; an edit made on what the page
showed is refused, with a sentence saying what changed and when, once another tab has changed it since."""

from __future__ import annotations

import datetime
import threading

import pytest

from imgcls.store import journal, workspace
from imgcls.ingest.imports import import_zip
from imgcls.store.journal import EditRefused

pytestmark = pytest.mark.usefixtures("imgcls_home")


@pytest.fixture
def ds(mk):
    import_zip(mk.zip(mk.class_members({"cat": 4, "dog": 4})), "pets")
    return "pets"


def _rows():
    return workspace.read_manifest("pets").set_index("path")


def _cat(n=0):
    df = _rows()
    path = df.index[df["label"] == "cat"][n]
    return path, df.loc[path, "source"]  # as imported: 'cat/000.png'


def test_a_relabel_on_a_value_changed_in_another_tab_is_refused_and_changes_nothing(ds):
    path, file = _cat()
    shown = {path: "cat"}  # what both tabs show
    journal.edit(ds, "relabel", [path], "dog", expect=shown)  # tab 1
    stamp = datetime.datetime.fromisoformat(journal.history(ds)[-1]["time"]).strftime("%H:%M")
    before = (journal.journal_path(ds).read_bytes(), (workspace.dataset_dir(ds) / "manifest.csv").read_bytes())
    with pytest.raises(EditRefused) as refused:
        journal.edit(ds, "relabel", [path], "fox", expect=shown)  # tab 2, still showing 'cat'
    text = str(refused.value)
    assert f"'{file}' was changed to 'dog' in another tab or by another edit at {stamp}" in text
    assert text.endswith("look again and repeat the edit if you still want it.")
    assert (journal.journal_path(ds).read_bytes(), (workspace.dataset_dir(ds) / "manifest.csv").read_bytes()) == before
    assert _rows().loc[path, "label"] == "dog"


def test_an_edit_on_the_value_still_shown_goes_through(ds):
    path, _ = _cat()
    assert journal.edit(ds, "relabel", [path], "fox", expect={path: "cat"}).changed == [path]
    journal.undo(ds)  # changed and changed back: the page's value is the present one again
    assert journal.edit(ds, "relabel", [path], "dog", expect={path: "cat"}).changed == [path]


def test_one_stale_image_refuses_the_whole_edit(ds):
    a, _ = _cat(0)
    b, file_b = _cat(1)
    journal.edit(ds, "exclude", [b])  # another tab
    with pytest.raises(EditRefused, match=f"'{file_b}' was changed to excluded"):
        journal.edit(ds, "exclude", [a, b], expect={a: False, b: False})
    assert not _rows().loc[a, "excluded"]
    assert len(journal.history(ds)) == 1


def test_several_stale_images_are_counted(ds):
    a, _ = _cat(0)
    b, _ = _cat(1)
    journal.edit(ds, "relabel", [a, b], "dog")
    with pytest.raises(EditRefused, match=r"2 of these images were changed .* since this page showed them \("):
        journal.edit(ds, "relabel", [a, b], "fox", expect={a: "cat", b: "cat"})
    assert set(_rows().loc[[a, b], "label"]) == {"dog"}


def test_two_tabs_editing_at_once_on_the_same_view_one_wins_the_other_is_told(ds):
    path, _ = _cat()
    start, outcomes = threading.Barrier(2), {}

    def tab(label):
        start.wait()
        try:
            outcomes[label] = journal.edit(ds, "relabel", [path], label, expect={path: "cat"}).entry
        except EditRefused as exc:
            outcomes[label] = str(exc)

    threads = [threading.Thread(target=tab, args=(label,)) for label in ("dog", "fox")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [label for label, out in outcomes.items() if isinstance(out, int)]
    assert len(won) == 1, outcomes
    lost = ({"dog", "fox"} - set(won)).pop()
    assert f"was changed to '{won[0]}'" in outcomes[lost]
    assert _rows().loc[path, "label"] == won[0] and len(journal.history(ds)) == 1


def test_an_image_gone_since_is_reported_missing_not_refused(ds):
    path, _ = _cat()
    res = journal.edit(ds, "note", [path, "images/gone.png"], "blurry", expect={path: "", "images/gone.png": ""})
    assert res.changed == [path] and res.missing == ["images/gone.png"]
