"""The classroom engine with real parts: classes and codes, a shared dataset whose test images stay on the
server, real tiny linear runs by students, and the server's scoring job run in the background."""

from __future__ import annotations

import hashlib
import io
import json
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgcls import cli, jobs
from imgcls.classroom import board, classes, scoring, shared
from imgcls.classroom.classes import ClassroomError
from imgcls.evaluate.evaluation import compute_metrics, split_probabilities
from imgcls.ingest.imports import import_files
from imgcls.store import access, runs, workspace
from imgcls.train.run import TrainConfig, prepare_run, run
from imgcls.vision import cachestore
from imgcls.vision.checkpoint import load_run_model

COLOURS = (("red", (150, 100, 100)), ("green", (100, 150, 100)), ("blue", (100, 100, 150)))
SMALL = {"strategy": "linear", "img_size": 64, "batch_size": 8}  # a run of a few seconds on 2 cores
BASELINE = {"epochs": 5, "img_size": 64, "batch_size": 8}  # the class's reference: what SMALL trains
CONFIG = '[roles]\nteacher = ["teacher@school.example"]\nadmin = ["admin@school.example"]\n'


def _png(colour, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    # wide spread: the colours overlap a little, so the hidden test has errors worth scoring
    arr = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-120, 120, (40, 40, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _people(home: Path) -> types.SimpleNamespace:
    """The operator's roles, and the accounts of a teacher, an admin and four students."""
    (home / "imgcls.toml").write_text(CONFIG)
    make = lambda sub, name, email="": access.User(subject=sub, issuer="https://id.example", name=name,  # noqa: E731
                                                   email=email)
    people = types.SimpleNamespace(teacher=make("t1", "Ms Teach", "teacher@school.example"),
                                   admin=make("a1", "Ada Min", "admin@school.example"),
                                   alice=make("s1", "Alice"), bob=make("s2", "Bob"), carol=make("s3", "=HYPERLINK(1)"),
                                   dan=make("s4", "Dan"))
    for user in vars(people).values():
        access.register(user)
    return people


def _as(user: access.User):
    """Work in this user's workspace, as the app does for each signed-in person."""
    return workspace.use(access.user_root(user))


def _cached_hashes(root: Path) -> set[str]:
    """Every image hash a workspace's caches hold: decoded images and features, in the chunked stores."""
    found = {p.stem for p in root.rglob("*.npy")}
    with workspace.use(root):
        for meta in root.rglob("store.json"):
            found |= set(cachestore.open_store(meta.parent.parent.name, meta.parent.name).slots)
    return found


def _make_dataset(name: str, per_class: int = 10) -> str:
    seed = 0
    for label, colour in COLOURS:
        import_files([(f"{label}{i}.png", _png(colour, seed + i)) for i in range(per_class)], name, label)
        seed += per_class
    return name


def _train(dataset: str, **kw) -> str:
    run_id = prepare_run(TrainConfig(dataset=dataset, **{**SMALL, "epochs": 5, **kw}))
    run(run_id, echo=lambda _: None)
    return run_id


def _wait_scored(class_id: str, sub_id: str, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sub = board.submission(class_id, sub_id)
        if sub["state"] not in jobs.ACTIVE:
            return sub
        time.sleep(0.2)
    raise AssertionError(f"not scored in time: {board.submission(class_id, sub_id)['status']}")


def _file_digests(root: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """One class with a shared dataset, and students' submissions scored by the background job:
    alice twice, bob once, carol with a damaged model, dan's still waiting in line."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("classroom") / "home"
    mp.setenv("IMGCLS_HOME", str(home))
    mp.delenv("IMGCLS_SERVER_HOME", raising=False)
    mp.delenv("IMGCLS_CONFIG", raising=False)
    people = _people(workspace.server_root())
    info = classes.create(people.teacher, "Biology 7b")
    with _as(people.teacher):
        _make_dataset("colours")
        listed = shared.share_dataset(info.id, people.teacher, "colours", baseline=BASELINE)
    out = types.SimpleNamespace(home=home, people=people, info=info, listed=listed, runs={}, subs={}, copies={})
    for who in ("alice", "bob", "carol", "dan"):
        user = getattr(people, who)
        classes.join(info.code.lower(), user)
        with _as(user):
            out.copies[who] = shared.start_from(info.id, "colours", user)
            out.runs[who] = _train(out.copies[who])
    with _as(people.alice):
        out.runs["alice2"] = _train(out.copies["alice"], epochs=2, lr=0.0005)
        first = board.submit(info.id, out.runs["alice"], people.alice, expected_accuracy=0.9)
        with pytest.raises(ClassroomError, match="still being scored"):
            board.submit(info.id, out.runs["alice2"], people.alice)
        out.subs["alice"] = _wait_scored(info.id, first["sub_id"])
        out.subs["alice2"] = _wait_scored(info.id, board.submit(info.id, out.runs["alice2"], people.alice,
                                                                 expected_accuracy=0.5)["sub_id"])
    with _as(people.bob):
        out.subs["bob"] = _wait_scored(info.id, board.submit(info.id, out.runs["bob"], people.bob, 0.7)["sub_id"])
    with _as(people.carol):
        (runs.run_dir(out.runs["carol"]) / "model.safetensors").write_bytes(b"not a model")
        out.subs["carol"] = _wait_scored(info.id, board.submit(info.id, out.runs["carol"], people.carol)["sub_id"])
    with jobs.slots.hold("cpu"), _as(people.dan):  # the device is busy: dan's submission waits in line
        out.subs["dan"] = board.submit(info.id, out.runs["dan"], people.dan)
        out.board = board.board(info.id)
        out.csv = board.board_csv(info.id)
    yield out
    jobs.stop(scoring.status_path(info.id, out.subs["dan"]["sub_id"]))
    mp.undo()


# --- classes, codes, members ------------------------------------------------------------------------


@pytest.fixture
def people(imgcls_home):
    return _people(workspace.server_root())


def test_only_teachers_make_classes_and_codes_are_unambiguous(people):
    with pytest.raises(PermissionError, match="Only teachers"):
        classes.create(people.alice, "My class")
    made = [classes.create(people.teacher, f"Class {i}") for i in range(5)]
    codes = {c.code for c in made}
    assert len(codes) == 5
    assert all(len(c) == 8 and set(c) <= set(classes.CODE_ALPHABET) and not set(c) & set("01OIL") for c in codes)
    assert classes.get(made[0].id).name == "Class 0" and made[0].teacher_name == "Ms Teach"
    assert [c.id for c in classes.taught_by(people.teacher.key)] == [c.id for c in made]
    with pytest.raises(ClassroomError, match="no class"):
        classes.get("0123456789ab")
    with pytest.raises(ClassroomError, match="needs a name"):
        classes.create(people.teacher, "  ")


def test_joining_by_code_ignores_case_and_spaces_and_the_teacher_joining_changes_nothing(people):
    info = classes.create(people.teacher, "Physics")
    typed = f"  {info.code[:4].lower()} {info.code[4:].lower()} "
    joined = classes.join(typed, people.alice)
    assert classes.is_member(joined, people.alice.key) and joined.members[people.alice.key]["name"] == "Alice"
    assert [c.id for c in classes.joined_by(people.alice.key)] == [info.id]
    assert classes.join(info.code, people.teacher).members == joined.members
    assert not classes.is_member(classes.get(info.id), people.teacher.key)
    with pytest.raises(ClassroomError, match="No class has the code 'ZZZZZZZZ'"):
        classes.join("ZZZZZZZZ", people.bob)


def test_a_removed_student_rejoins_only_with_a_new_code(people):
    info = classes.create(people.teacher, "Chemistry")
    classes.join(info.code, people.alice)
    with pytest.raises(PermissionError, match="Only the teacher"):
        classes.remove_student(info.id, people.bob.key, people.alice.key)
    classes.remove_student(info.id, people.teacher.key, people.alice.key)
    assert not classes.is_member(classes.get(info.id), people.alice.key)
    with pytest.raises(PermissionError, match="removed"):
        classes.join(info.code, people.alice)
    fresh = classes.new_code(info.id, people.teacher.key)
    assert fresh.code != info.code
    with pytest.raises(ClassroomError, match="No class has the code"):
        classes.join(info.code, people.bob)  # the old code opens nothing any more
    assert classes.is_member(classes.join(fresh.code, people.alice), people.alice.key)


def test_only_the_teacher_or_an_admin_manages_a_class(people):
    info = classes.create(people.teacher, "History")
    classes.join(info.code, people.alice)
    for attempt in (lambda k: classes.set_frozen(info.id, k, True), lambda k: classes.new_code(info.id, k)):
        with pytest.raises(PermissionError):
            attempt(people.alice.key)
    assert classes.set_frozen(info.id, people.admin.key, True).frozen
    assert not classes.set_frozen(info.id, people.teacher.key, False).frozen
    assert classes.can_manage(info, people.admin.key) and not classes.can_manage(info, people.alice.key)
    with _as(people.alice), pytest.raises(PermissionError):
        shared.share_dataset(info.id, people.alice, "anything")


def test_join_link_uses_the_public_address_when_the_operator_set_one(people):
    assert classes.join_link(" ab cd-efgh") == "/classroom?join=ABCDEFGH"
    assert classes.join_link("abcdefgh", "http://10.0.0.7:8501") == "http://10.0.0.7:8501/classroom?join=ABCDEFGH"
    (workspace.server_root() / "imgcls.toml").write_text('public_url = "https://ml.school.example/"\n' + CONFIG)
    assert classes.join_link("abcdefgh", "http://10.0.0.7:8501") == "https://ml.school.example/classroom?join=ABCDEFGH"


# --- shared datasets and the hidden test ----------------------------------------------------------


def test_a_dataset_without_test_split_holds_back_a_seeded_stratified_fifth(people):
    first, second, third = (classes.create(people.teacher, n) for n in ("A", "B", "C"))
    with _as(people.teacher):
        _make_dataset("plain")
        df = workspace.read_manifest("plain")
        df.loc[df["split"] == "test", "split"] = "train"
        df.loc[df.index[0], "excluded"] = True
        workspace.write_manifest(workspace.dataset_dir("plain"), df)
        listed = shared.share_dataset(first.id, people.teacher, "plain")
        shared.share_dataset(second.id, people.teacher, "plain")
        everything = shared.share_dataset(third.id, people.teacher, "plain", hold_back_test=False)
        with pytest.raises(ClassroomError, match="already has a dataset named 'plain'"):
            shared.share_dataset(first.id, people.teacher, "plain")
    hidden = shared.hidden_rows(first.id, "plain")
    assert hidden["label"].value_counts().to_dict() == {"red": 2, "green": 2, "blue": 2}
    assert sorted(hidden["path"]) == sorted(shared.hidden_rows(second.id, "plain")["path"])  # seeded
    opened = workspace.load_manifest_file(shared.shared_dir(first.id, "plain"))
    excluded = df.at[df.index[0], "path"]
    assert excluded not in set(opened["path"]) | set(hidden["path"])
    assert len(opened) + len(hidden) == len(df) - 1 and not set(opened["path"]) & set(hidden["path"])
    assert set(opened["split"]) == {"train", "val"}
    assert listed["hidden_test"] == 6 and listed["images"] == len(opened)
    assert listed["classes"] == ["blue", "green", "red"]
    assert everything["hidden_test"] == 0 and everything["images"] == len(df) - 1


def test_the_hidden_test_never_reaches_a_students_workspace(room):
    info, people = room.info, room.people
    hidden = shared.hidden_rows(info.id, "colours")
    with _as(people.teacher):
        teacher_test = workspace.read_manifest("colours").query("split == 'test'")
    assert sorted(hidden["hash"]) == sorted(teacher_test["hash"]) and len(hidden) == 6
    assert shared.class_datasets(info.id) == [room.listed]
    assert room.listed["hidden_test"] == 6 and room.listed["images"] == 24
    for who in ("alice", "bob", "carol", "dan"):
        user = getattr(people, who)
        root = access.user_root(user)
        digests = _file_digests(root)
        assert digests and not digests & set(hidden["hash"]), who
        cached = _cached_hashes(root)
        assert cached and not cached & set(hidden["hash"]), who  # nor decoded or embedded copies of them
        with _as(user):
            copy = workspace.read_manifest(room.copies[who])
            assert set(copy["split"]) == {"train", "val"} and len(copy) == 24
            assert shared.origin(room.copies[who])["class_id"] == info.id
            assert shared.origin(room.copies[who])["dataset"] == "colours"
    with _as(people.alice):
        assert shared.origin(room.copies["alice"])["class_name"] == "Biology 7b"
    assert not _file_digests(shared.shared_dir(info.id, "colours")) & set(hidden["hash"])
    scored = _cached_hashes(scoring.scoring_home(info.id))
    assert scored == set(hidden["hash"])  # the server decoded them on its own side


def test_a_student_may_copy_a_class_dataset_twice_but_an_outsider_not_at_all(room):
    with _as(room.people.bob):
        again = shared.start_from(room.info.id, "colours", room.people.bob)
        assert again != room.copies["bob"] and workspace.dataset_exists(again)
        named = shared.start_from(room.info.id, "colours", room.people.bob, "my colours")
        assert named == "my colours" and shared.origin(named)["dataset"] == "colours"
    outsider = access.User(subject="x9", issuer="https://id.example", name="Eve")
    with _as(outsider), pytest.raises(PermissionError, match="join it first"):
        shared.start_from(room.info.id, "colours", outsider)
    assert not list((access.user_root(outsider) / "datasets").glob("*/manifest.csv"))


# --- the board ----------------------------------------------------------------------------------


def test_the_servers_score_matches_compute_metrics_on_the_same_images(room):
    people, info = room.people, room.info
    with _as(people.alice):
        model, config = load_run_model(room.runs["alice"])
    with _as(people.teacher):  # the teacher's own copy of the same test images, through the evaluation code
        test = workspace.read_manifest("colours").query("split == 'test'").reset_index(drop=True)
        probs = split_probabilities(model, {**config, "dataset": "colours"}, test, tta=False, device="cpu")
    labels = test["label"].map({c: i for i, c in enumerate(config["classes"])}).to_numpy()
    expected = compute_metrics(labels, probs, config["classes"])
    score = room.subs["alice"]["score"]
    assert room.subs["alice"]["state"] == "done" and score["n"] == len(test) == 6
    assert score["accuracy"] == pytest.approx(expected["accuracy"])
    assert score["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert score["confusion"] == expected["confusion"] and score["per_class"] == expected["per_class"]
    report = board.hidden_report(info.id, room.subs["alice"]["sub_id"], people.teacher.key)
    by_hash = dict(zip(test["hash"], probs.argmax(1)))
    hidden = shared.hidden_rows(info.id, "colours").set_index("path")["hash"]
    for row in report["rows"]:
        assert row["prediction"] == config["classes"][by_hash[hidden[row["path"]]]]


def test_the_score_verb_scores_again_with_the_same_numbers(room, capsys):
    sub = room.subs["bob"]
    assert cli.main(["score-submission", room.info.id, sub["sub_id"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["accuracy"] == pytest.approx(sub["score"]["accuracy"]) and printed["n"] == 6
    assert set(printed) == {"accuracy", "macro_f1", "balanced_accuracy", "n", "dataset"}


def test_a_student_sees_only_aggregate_numbers_and_the_teacher_sees_every_image(room):
    info, people, sub = room.info, room.people, room.subs["alice"]
    assert "rows" not in sub and sub["score"]["accuracy"] is not None
    assert not any(isinstance(v, list) and v and isinstance(v[0], dict) and "path" in v[0]
                   for v in sub["score"].values())
    for key in (people.alice.key, people.bob.key):
        with pytest.raises(PermissionError):
            board.hidden_report(info.id, sub["sub_id"], key)
        with pytest.raises(PermissionError):
            board.hidden_image(info.id, "colours", "images/x.png", key)
    rows = board.hidden_report(info.id, sub["sub_id"], people.admin.key)["rows"]
    assert len(rows) == 6 and {"path", "label", "prediction", "correct"} <= set(rows[0])
    assert sum(r["correct"] for r in rows) == round(sub["score"]["accuracy"] * 6)
    path = rows[0]["path"]
    data = board.hidden_image(info.id, "colours", path, people.teacher.key)
    assert hashlib.sha256(data).hexdigest() == shared.hidden_rows(info.id, "colours").set_index("path").at[path, "hash"]
    with pytest.raises(ClassroomError, match="not a hidden test image"):
        board.hidden_image(info.id, "colours", "../../class.json", people.teacher.key)


def test_the_board_ranks_each_students_best_with_unscored_rows_last(room):
    df, subs = room.board, room.subs
    assert list(df.columns) == board.COLUMNS
    scored = df[df["state"] == "done"]
    assert len(scored) == 2 and list(scored["rank"]) == sorted(scored["rank"]) and scored["rank"].iloc[0] == 1
    tied = scored["accuracy"].iloc[0] == scored["accuracy"].iloc[1] and \
        scored["macro_f1"].iloc[0] == scored["macro_f1"].iloc[1]
    assert (scored["rank"].iloc[1] == 1) == tied  # equal scores share a rank, the earlier listed first
    assert tied <= (scored["submitted"].iloc[0] <= scored["submitted"].iloc[1])
    assert (scored[["accuracy", "macro_f1"]].apply(tuple, axis=1).tolist()
            == sorted(scored[["accuracy", "macro_f1"]].apply(tuple, axis=1).tolist(), reverse=True))
    alice_subs = [subs["alice"], subs["alice2"]]
    best = max(alice_subs, key=lambda s: (s["score"]["accuracy"], s["score"]["macro_f1"], -s["submitted"]))
    alice = df.set_index("student").loc[room.people.alice.key]
    assert alice["sub_id"] == best["sub_id"] and alice["expected"] == best["expected"]
    assert list(df["state"].iloc[2:]) == ["failed", "queued"] and df["rank"].iloc[2:].isna().all()
    assert subs["carol"]["state"] == "failed" and "cannot be loaded" in subs["carol"]["status"]["message"]
    assert "log.txt" not in subs["carol"]["status"]["message"]
    assert subs["alice2"]["settings"] == "epochs 2 (baseline 5) · learning rate 0.0005 (baseline 0.003)"
    assert subs["alice"]["settings"] == "same as the baseline"


def test_the_board_csv_has_every_row_and_keeps_names_as_text(room):
    table = pd.read_csv(io.BytesIO(room.csv))
    assert list(table.columns) == board.COLUMNS and list(table["sub_id"]) == list(room.board["sub_id"])
    assert "'=HYPERLINK(1)" in set(table["name"])
    assert table["accuracy"].iloc[0] == pytest.approx(room.board["accuracy"].iloc[0])
    assert table["submitted"].iloc[0].startswith(time.strftime("%Y-"))


def test_prediction_quality_compares_every_prediction_with_its_score(room):
    subs = [room.subs[k] for k in ("alice", "alice2", "bob")]
    errors = [abs(s["expected"] - s["score"]["accuracy"]) * 100 for s in subs]
    quality = board.prediction_quality(room.info.id)
    assert quality["n"] == 3 and quality["mean_abs_error"] == pytest.approx(sum(errors) / 3)
    assert quality["within_5"] == pytest.approx(sum(e <= 5 for e in errors) / 3)
    assert board.curves(room.info.id, room.subs["bob"]["sub_id"])
    with _as(room.people.bob):
        epochs = [m for m in runs.read_metrics(room.runs["bob"]) if m.get("kind") == "epoch"]
    assert board.curves(room.info.id, room.subs["bob"]["sub_id"]) == epochs


def test_nobody_predicting_gives_no_prediction_quality(people):
    info = classes.create(people.teacher, "Empty")
    assert board.prediction_quality(info.id) == {"n": 0, "mean_abs_error": None, "within_5": None}
    assert board.board(info.id).empty and list(board.board(info.id).columns) == board.COLUMNS


def test_submissions_are_refused_in_plain_words(room):
    people, info = room.people, room.info
    other = classes.create(people.teacher, "Other class")
    with _as(people.alice):
        with pytest.raises(PermissionError, match="Only students of 'Other class'"):
            board.submit(other.id, room.runs["alice"], people.alice)
        classes.join(other.code, people.alice)
        with pytest.raises(ClassroomError, match="was not copied from 'Other class'"):
            board.submit(other.id, room.runs["alice"], people.alice)
        classes.set_frozen(other.id, people.teacher.key, True)
        with pytest.raises(ClassroomError, match="frozen"):
            board.submit(other.id, room.runs["alice"], people.alice)
        unfinished = prepare_run(TrainConfig(dataset=room.copies["alice"], **SMALL))
        with pytest.raises(ClassroomError, match="no kept model"):
            board.submit(info.id, unfinished, people.alice)
        with pytest.raises(ClassroomError, match="between 0 and 1"):
            board.submit(info.id, room.runs["alice"], people.alice, expected_accuracy=85)
    assert len([s for s in scoring.submissions_dir(other.id).glob("*")]) == 0
