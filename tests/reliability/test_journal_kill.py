"""An edit and its journal entry land together or not at all: a process making edits is killed with SIGKILL,
at seeded random moments and at each step of an edit, and the dataset must then open with a manifest that
is exactly the journal's replay from the import state, keeping every edit that was acknowledged.

The worker is forked after the imports (no interpreter start per kill). It makes seeded relabels,
excludes, restores, moves, notes, undos, redos and the odd purge on a dataset of a few thousand rows and
writes 'done <entry>' in one write() once each edit has returned. An edit is one transaction of the
dataset's store, so the only state a kill can leave for the next reader to settle is a purge whose files
are not yet deleted. Replay: JOURNAL_KILL_SEED=<n>,
JOURNAL_KILL_TRIALS=<n> (and JOURNAL_KILL_ROWS=<n> for a bigger dataset).
"""

from __future__ import annotations

import os
import random
import signal
import time
import traceback

import pandas as pd
import pytest

from imgcls.ingest import imports as data
from imgcls.store import editlog, journal, manifeststore, workspace

SEED = int(os.environ.get("JOURNAL_KILL_SEED", "4242"))
TRIALS = int(os.environ.get("JOURNAL_KILL_TRIALS", "60"))
ROWS = int(os.environ.get("JOURNAL_KILL_ROWS", "3000"))
NAME = "big"
LABELS = ("cat", "dog", "fox", "owl", "emu")
FIELDS = ("label", "excluded", "split", "note")

pytestmark = pytest.mark.usefixtures("imgcls_home")


@pytest.fixture
def big(mk):
    """A dataset of ROWS rows (two real images imported, the rest written as an import would list them,
    each with a small file), and its rows as imported."""
    data.import_files([("a.png", mk.png(1)), ("b.png", mk.png(2))], NAME, "cat")
    folder = workspace.dataset_dir(NAME)
    df = pd.DataFrame({
        "path": [f"images/f{i:05d}.png" for i in range(ROWS)], "label": [LABELS[i % 4] for i in range(ROWS)],
        "split": [workspace.SPLITS[i % 3] for i in range(ROWS)], "hash": [f"{i:064x}" for i in range(ROWS)],
        "width": 8, "height": 8, "excluded": False, "source": [f"photos/img_{i:05d}.jpg" for i in range(ROWS)],
        "format": "PNG", "bytes": 3, "note": ""})
    for path in df["path"]:
        (folder / path).write_bytes(b"img")
    for path in workspace.read_manifest(NAME)["path"]:  # the two imported files go: the rows below replace them
        (folder / path).unlink()
    workspace.write_manifest(folder, df)
    return _state(df)


def _state(df: pd.DataFrame) -> dict[str, dict]:
    return {p: {f: editlog.plain(v) for f, v in zip(FIELDS, vals)}
            for p, *vals in zip(df["path"], *(df[f] for f in FIELDS))}


# --- the worker ----------------------------------------------------------------------------------------


def _worker(fd: int, rng: random.Random) -> None:
    """Seeded edits until killed; 'done <id>' (or 'done -') after each returns."""
    for _ in range(10_000):
        kind = rng.choices(["relabel", "exclude", "restore", "move", "note", "undo", "redo", "purge"],
                           weights=[30, 10, 8, 10, 6, 18, 12, 1])[0]
        if kind in ("undo", "redo"):
            result = (journal.undo if kind == "undo" else journal.redo)(NAME)
        elif kind == "purge":
            result = journal.purge_excluded(NAME)
        else:
            paths = list(workspace.read_manifest(NAME)["path"])
            count = 1500 if rng.random() < 0.05 else rng.randint(1, 40)
            value = {"relabel": rng.choice(LABELS), "move": rng.choice(workspace.SPLITS),
                     "note": rng.choice(["", "blurry", "two animals"])}.get(kind)
            result = journal.edit(NAME, kind, rng.sample(paths, min(count, len(paths))), value)
        entry = result.entry if result is not None and result.entry is not None else "-"
        os.write(fd, f"done {entry}\n".encode())


def _fork(work) -> tuple[int, int]:
    """Start `work(fd)` in a forked child; (pid, read end of its pipe)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            work(write)
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write, f"error {traceback.format_exc()[-1500:]!r}\n".encode())
        finally:
            os._exit(0)
    os.close(write)
    return pid, read


def _acknowledged(read: int) -> list[int]:
    raw = b""
    while chunk := os.read(read, 65536):
        raw += chunk
    os.close(read)
    lines = raw.decode().split("\n")[:-1]  # a line cut by the kill was never acknowledged
    errors = [line for line in lines if line.startswith("error")]
    assert not errors, errors[0]
    return [int(line.split()[1]) for line in lines if line.split()[1] != "-"]


# --- the check -----------------------------------------------------------------------------------------


def check(imported: dict[str, dict], acked: list[int]) -> list[str]:
    """Open the dataset as the app does; every way it disagrees with the journal's replay from `imported`."""
    entries = journal.history(NAME)
    df = workspace.read_manifest(NAME)
    problems = []
    ids = [e["id"] for e in entries]
    if ids != sorted(set(ids)):
        problems.append(f"journal ids out of order or repeated: {ids[-6:]}")
    missing = set(acked) - set(ids)
    if missing:
        problems.append(f"acknowledged edits lost: {sorted(missing)}")
    # replay: each entry's before values must be the state the entries before it left, then its after applies
    state = {p: dict(v) for p, v in imported.items()}
    for e in entries:
        off = []
        for c in e.get("changes") or []:
            row = state.get(c["path"])
            if e["action"] == "purge":
                if row is None or row["excluded"] is not True:
                    off.append(f"{c['path']} is not excluded there")
                state.pop(c["path"], None)
            elif row is None or row[e["field"]] != c["before"]:
                off.append(f"{c['path']} {e['field']} is {row and row[e['field']]!r} there, not {c['before']!r}")
            else:
                row[e["field"]] = c["after"]
        if off:
            problems.append(f"entry {e['id']} {e['action']} does not follow from the entries before it: "
                            f"{len(off)} images, e.g. {off[0]}")
    have = _state(df)
    if set(have) != set(state):
        problems.append(f"rows differ: {len(set(state) - set(have))} missing, {len(set(have) - set(state))} extra")
    wrong = [p for p in have if p in state and have[p] != state[p]]
    if wrong:
        problems.append(f"{len(wrong)} rows differ from the replay, e.g. {wrong[0]}: manifest {have[wrong[0]]}, "
                        f"journal {state[wrong[0]]}")
    folder = workspace.dataset_dir(NAME)
    files = {p.relative_to(folder).as_posix() for p in (folder / "images").iterdir()}
    if files != set(have):
        problems.append(f"image files differ from the rows: {len(files - set(have))} unlisted, "
                        f"{len(set(have) - files)} missing")
    if not editlog.in_step(NAME):
        problems.append("the journal is still ahead of the manifest after opening")
    return problems


def test_edits_killed_at_random_moments_leave_manifest_equal_to_journal_replay(big):
    rng = random.Random(SEED)
    delays = [rng.uniform(0.0, 0.3) for _ in range(TRIALS)]
    torn = killed = acked_total = 0
    failures = []
    started = time.perf_counter()
    for trial, delay in enumerate(delays):
        child_rng = random.Random(f"{SEED}/{trial}")
        pid, read = _fork(lambda fd: _worker(fd, child_rng))
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        acked = _acknowledged(read)
        acked_total += len(acked)
        torn += not editlog.in_step(NAME)  # before anything reads it: the kill fell inside an edit
        problems = check(big, acked)
        if problems:
            failures.append(f"trial {trial} (killed after {delay * 1000:.0f} ms): " + "; ".join(problems))
    seconds = time.perf_counter() - started
    print(f"journal kill: seed {SEED}, {TRIALS} trials, {killed} killed, {torn} left the journal ahead of the "
          f"manifest, {acked_total} edits acknowledged, {len(journal.history(NAME))} entries, {seconds:.1f} s")
    assert killed == TRIALS, "every worker must still be running when it is killed"
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures[:10])


# --- each step of an edit, killed deterministically -----------------------------------------------------


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_while_adding_the_entry(monkeypatch):
    monkeypatch.setattr(manifeststore, "add_entry", lambda *a, **k: _die())


def _kill_before_commit(monkeypatch):
    real_set, real_delete = manifeststore.set_values, manifeststore.delete_rows
    monkeypatch.setattr(manifeststore, "set_values", lambda *a, **k: (real_set(*a, **k), _die()))
    monkeypatch.setattr(manifeststore, "delete_rows", lambda *a, **k: (real_delete(*a, **k), _die()))


def _kill_after_commit(monkeypatch):  # a purge: rows gone, files not yet
    monkeypatch.setattr(manifeststore, "touch_csv", lambda *a, **k: _die())


STEPS = {"while the journal entry is added": (_kill_while_adding_the_entry, False),
         "after the rows are written, before the commit": (_kill_before_commit, False),
         "after the commit": (_kill_after_commit, True)}
ACTIONS = ["relabel", "exclude", "move", "undo", "redo", "purge"]


def _prepare(action: str, paths: list[str]) -> None:
    """Edits made before the killed one, so that undo, redo and purge have something to do."""
    journal.edit(NAME, "relabel", paths[:3], "emu")
    if action == "redo":
        journal.undo(NAME)
    if action == "purge":
        journal.edit(NAME, "exclude", paths[3:6])


def _killed_action(action: str, paths: list[str]):
    if action in ("undo", "redo"):
        return (journal.undo if action == "undo" else journal.redo)(NAME)
    if action == "purge":
        return journal.purge_excluded(NAME)
    return journal.edit(NAME, action, paths[6:9], {"relabel": "owl", "move": "test"}.get(action))


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("step", list(STEPS))
def test_an_edit_killed_at_each_step_is_whole_or_absent_after_opening(big, monkeypatch, step, action):
    paths = sorted(big)
    _prepare(action, paths)
    before = {e["id"] for e in journal.history(NAME)}
    patch, lands = STEPS[step]

    def work(fd):
        patch(monkeypatch)
        _killed_action(action, paths)
        os.write(fd, b"returned\n")  # must never run: the edit is killed inside

    pid, read = _fork(work)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.read(read, 100) == b"", "the child should have been killed mid-edit"
    os.close(read)
    assert check(big, sorted(before)) == []
    new = [e for e in journal.history(NAME) if e["id"] not in before]
    assert len(new) == (1 if lands else 0), new  # rolled forward whole, or (a torn line) never made
    if lands and action != "undo":
        assert new[0]["changes"], new[0]
    assert journal.edit(NAME, "note", paths[-1:], "after the crash").entry == max(before | {e["id"] for e in new}) + 1
    assert check(big, []) == []
