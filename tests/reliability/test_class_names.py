"""One rule for class names, whichever way they come in: ZIP and folder imports, CSV labels, loose uploads
and relabel edits refuse the same names, and an import skips only the files a refused name would label."""

from __future__ import annotations

import pytest

from imgcls.ingest import imports as data
from imgcls.store import journal, names, workspace

pytestmark = pytest.mark.usefixtures("imgcls_home")

RLO = "cats\u202eslobmys"  # a right-to-left override makes the name read backwards on screen
REFUSED = {
    "bidi override": RLO,
    "isolate": "dogs\u2066x\u2069",
    "bell": "bell\x07",
    "escape": "esc\x1b[31m",
    "zero width": "zero\u200bwidth",
    "too long": "x" * 250,
    "dot": ".",
    "dotdot": "..",
    "hidden": ".hidden",
    "slash": "a/b",
    "backslash": "a\\b",
    "empty": "   ",
}
KEPT = ["cats", "ice cream", "crème brûlée", "0", "train", "Cat", "v1.2.", "ratio 4:3", "**bold**", "猫", "x" * 64]


@pytest.mark.parametrize("name", list(REFUSED.values()), ids=list(REFUSED))
def test_the_rule_refuses_with_a_sentence_naming_the_name(name):
    with pytest.raises(names.NameRefused) as info:
        names.check_class_name(name)
    message = str(info.value)
    assert message.endswith(".") and len(message) < 200
    assert not any(c in message for c in "\u202e\u2066\x07\x1b\u200b")  # quoted, never pasted raw
    assert isinstance(info.value, workspace.WorkspaceError)


@pytest.mark.parametrize("name", KEPT)
def test_the_rule_keeps_ordinary_names(name):
    assert names.check_class_name(f"  {name} ") == name


def test_names_are_nfc_normalised():
    assert names.check_class_name("cafe\u0301") == "caf\u00e9"


def test_a_relabel_edit_uses_the_same_rule(mk):
    data.import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "d")
    path = workspace.read_manifest("d")["path"].iloc[0]
    for name in REFUSED.values():
        with pytest.raises(journal.EditRefused) as info:
            journal.edit("d", "relabel", [path], name)
        with pytest.raises(names.NameRefused) as same:
            names.check_class_name(name)
        assert str(info.value) == str(same.value)
    assert journal.history("d") == []
    journal.edit("d", "relabel", [path], "**bold**")
    assert workspace.read_manifest("d").set_index("path").loc[path, "label"] == "**bold**"


def _hostile_members(mk):
    members = mk.class_members({"cats": 2, "dogs": 2})
    members += [(f"{RLO}/0.png", mk.png(50)), ("bell\x07/0.png", mk.png(51)), (f"{'x' * 250}/0.png", mk.png(52))]
    return members


def _check_report(report, bad: int):
    assert report.class_counts == {"cats": 2, "dogs": 2}
    refused = [s for s in report.skipped_files if s["reason"] == "refused class name"]
    assert len(refused) == bad
    assert all("cannot be a class name" in s["detail"] or "too long" in s["detail"] for s in refused)


def test_a_zip_import_skips_only_the_files_of_refused_folder_names(mk):
    _check_report(data.import_zip(mk.zip(_hostile_members(mk)), "z"), 3)
    assert set(workspace.read_manifest("z")["label"]) == {"cats", "dogs"}


def test_a_folder_import_skips_them_too(mk, tmp_path):
    root = tmp_path / "photos"
    for name, content in _hostile_members(mk):
        if len(name.split("/")[0]) > 200:  # a file system refuses such a long folder name itself
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    _check_report(data.import_folder(root, "f"), 2)


def test_csv_labels_go_through_the_rule(mk):
    members = [(f"{i}.png", mk.png(i)) for i in range(7)]
    csv = ("filename,label\n0.png,cats\n1.png,cats\n2.png,dogs\n3.png,dogs\n"
           f"4.png,{RLO}\n5.png,\"esc\x1b[31m\"\n6.png,{'y' * 250}\n").encode()
    report = data.import_zip(mk.zip(members), "c", label_csv=csv)
    _check_report(report, 3)


def test_loose_uploads_refuse_a_bad_class_name(mk):
    with pytest.raises(data.ImportFailed, match="invisible or control"):
        data.import_files([("a.png", mk.png(1))], "u", RLO)
    assert not workspace.dataset_exists("u")


@pytest.mark.parametrize("name", [RLO, "a\u2066b", "bell\x07", "esc\x1b", "zero\u200bwidth"])
def test_dataset_names_refuse_the_same_invisible_characters(name):
    with pytest.raises(workspace.WorkspaceError):
        workspace.check_name(name)
