"""What imports killed with SIGKILL leave behind is removed by the next import or `data.clean_leftovers()`,
and the files of an import running right now in another process are never touched."""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path

import pytest

from imgcls.ingest import imports as data
from imgcls.store import workspace

pytestmark = pytest.mark.usefixtures("imgcls_home", "no_child_left")
_CHILDREN: list[int] = []


@pytest.fixture
def no_child_left():
    """Whatever a failing test leaves running is killed."""
    yield
    while _CHILDREN:
        pid = _CHILDREN.pop()
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running (a reaped one raises: never killed)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _files(mk, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"img{i:04d}.png", mk.png(i, size=(24, 24))) for i in range(start, start + n)]


def _fork(work) -> tuple[int, int, int]:
    """Run `work(to_parent, from_parent)` in a forked child; (pid, read end, write end) for the parent."""
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(up_r)
            os.close(down_w)
            work(up_w, down_r)
        except BaseException:  # noqa: BLE001 - reported to the parent
            os.write(up_w, f"error {traceback.format_exc()[-1500:]!r}\n".encode())
            code = 1
        finally:
            os._exit(code)
    _CHILDREN.append(pid)
    os.close(up_w)
    os.close(down_r)
    return pid, up_r, down_w


def _stored(folder) -> list:
    images = folder / "images"
    return sorted(images.iterdir()) if images.is_dir() else []


def _kill_when(pid: int, ready, seconds: float = 30) -> None:
    """SIGKILL the child as soon as `ready()` holds (it is importing then)."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, "the import never got going"
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the import ended before it could be killed"


def _staging():
    return [p for p in workspace.datasets_dir().iterdir() if p.name.startswith(".import-") and p.is_dir()]


def _size(paths) -> int:
    return sum(p.stat().st_size for folder in paths for p in folder.rglob("*") if p.is_file())


def test_a_new_dataset_import_killed_midway_is_cleaned_up_on_demand(mk):
    files = _files(mk, 400)
    pid, up, _ = _fork(lambda out, inp: data.import_files(files, "pets", "cat"))
    _kill_when(pid, lambda: any(len(_stored(p)) >= 40 for p in _staging()))
    left = _staging()
    assert len(left) == 1 and not workspace.dataset_exists("pets")
    size, count = _size(left), len(_stored(left[0]))
    report = data.clean_leftovers()
    assert report.folders == [f"datasets/{left[0].name}"] and report.bytes == size and count >= 40
    assert f"{len(report.folders)} folder(s)" in report.message
    assert sorted(p.name for p in workspace.datasets_dir().iterdir()) == []  # no folder, no lock file left
    assert data.clean_leftovers().folders == []


def test_images_an_add_import_stored_before_its_kill_are_removed_listed_ones_stay(mk):
    data.import_files(_files(mk, 20), "pets", "cat")
    folder = workspace.dataset_dir("pets")
    listed = {folder / p for p in workspace.read_manifest("pets")["path"]}
    more = _files(mk, 400, start=100)
    pid, up, _ = _fork(lambda out, inp: data.import_files(more, "pets", "dog"))
    _kill_when(pid, lambda: len(_stored(folder)) >= 60)
    orphans = [p for p in _stored(folder) if p not in listed]
    size = sum(p.stat().st_size for p in orphans)
    assert len(orphans) >= 40 and set(workspace.read_manifest("pets")["path"]) == {
        p.relative_to(folder).as_posix() for p in listed}
    report = data.clean_leftovers()
    assert sorted(report.files) == sorted(p.relative_to(workspace.home()).as_posix() for p in orphans)
    assert report.bytes == size
    assert set(_stored(folder)) == listed  # every listed image kept, nothing else
    assert data.import_files(more[:5], "pets", "dog").images == 5  # the same images import cleanly again


def test_the_next_import_removes_what_a_killed_one_left(mk):
    pid, up, _ = _fork(lambda out, inp: data.import_files(_files(mk, 400), "first", "cat"))
    _kill_when(pid, lambda: any(len(_stored(p)) >= 20 for p in _staging()))
    assert len(_staging()) == 1
    data.import_files(_files(mk, 3, start=900), "second", "cat")
    assert _staging() == [] and workspace.list_datasets() == ["second"]
    assert sorted(p.name for p in workspace.datasets_dir().iterdir()) == ["second"]


def _paused_import(mk, name: str, start: int = 0):
    """A child importing 200 images into `name` that stops midway until the parent writes to it."""
    files = _files(mk, 200, start=start)

    def work(out, inp):
        def progress(fraction, text):
            if 0.3 < fraction < 0.9 and not getattr(progress, "paused", False):
                progress.paused = True
                os.write(out, b"paused\n")
                os.read(inp, 1)  # wait for the parent
        report = data.import_files(files, name, "cat", progress=progress)
        os.write(out, f"done {report.images}\n".encode())

    pid, up, down = _fork(work)
    assert os.read(up, 100) == b"paused\n"
    return pid, up, down


def _resume(pid: int, up: int, down: int) -> str:
    os.write(down, b"g")
    out = b""
    while chunk := os.read(up, 4096):
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, out
    return out.decode()


def test_an_import_running_in_another_process_is_left_alone(mk):
    pid, up, down = _paused_import(mk, "pets")
    running = _staging()
    assert len(running) == 1
    stored = _stored(running[0])
    assert stored
    report = data.clean_leftovers()
    assert report.folders == [] and report.files == [] and len(report.busy) == 1
    assert "the import into 'pets'" in report.busy[0] and "Left alone while in use" in report.message
    data.import_files(_files(mk, 3, start=900), "other", "cat")  # another import's quick cleanup, too
    assert _stored(running[0]) == stored
    assert _resume(pid, up, down) == "done 200\n"
    folder = workspace.dataset_dir("pets")
    assert len(workspace.read_manifest("pets")) == 200 and len(_stored(folder)) == 200


def test_images_of_an_add_import_running_now_are_not_taken_for_orphans(mk):
    data.import_files(_files(mk, 10, start=500), "pets", "dog")
    pid, up, down = _paused_import(mk, "pets")
    folder = workspace.dataset_dir("pets")
    stored = _stored(folder)
    assert len(stored) > 10  # some of the new images are on disk, not yet in the manifest
    report = data.clean_leftovers()
    assert report.files == [] and _stored(folder) == stored
    assert any("pets" in b for b in report.busy)
    assert _resume(pid, up, down) == "done 200\n"
    assert len(workspace.read_manifest("pets")) == 210 and len(_stored(folder)) == 210


def test_folders_left_by_older_versions_and_stray_files_go_with_the_thorough_cleanup(mk):
    data.import_files(_files(mk, 4), "pets", "cat")
    root, folder = workspace.datasets_dir(), workspace.dataset_dir("pets")
    (root / ".import-0123456789ab" / "images").mkdir(parents=True)  # no lock file: a crash before locks
    (root / ".import-0123456789ab" / "images" / "x.png").write_bytes(b"12345")
    (root / ".deleting-old-77").mkdir()  # a delete cut short
    (folder / "images" / "stray.png").write_bytes(b"123")
    cut_manifest = folder / ".manifest.csv.k2j4h5.tmp"  # only written under the dataset's lock: dead now
    cut_manifest.write_bytes(b"half a manifest")
    old_temp, fresh_temp = folder / ".health.json.abc123.tmp", folder / ".health.json.def456.tmp"
    old_temp.write_bytes(b"old")
    os.utime(old_temp, (time.time() - 7200, time.time() - 7200))
    fresh_temp.write_bytes(b"x")  # perhaps being written right now
    quick = data.clean_leftovers(everything=False)
    assert sorted(quick.folders) == ["datasets/.deleting-old-77", "datasets/.import-0123456789ab"]
    assert quick.temp_files == ["datasets/pets/.manifest.csv.k2j4h5.tmp"]
    assert quick.bytes == 5 + len(b"half a manifest") and "2 folder(s)" in quick.message
    assert (folder / "images" / "stray.png").exists() and old_temp.exists()  # the quick one reads no manifest
    report = data.clean_leftovers()
    assert report.files == ["datasets/pets/images/stray.png"] and report.bytes == 3 + 3
    assert report.temp_files == ["datasets/pets/.health.json.abc123.tmp"] and fresh_temp.exists()
    assert len(_stored(folder)) == 4 == len(workspace.read_manifest("pets"))
    assert data.clean_leftovers().message == "Nothing was left over from interrupted imports or edits."


def test_a_blank_unlocked_lock_file_is_a_dead_imports_even_when_new_and_a_starting_one_is_waited_for(mk):
    import threading

    root = workspace.datasets_dir()
    dead = root / ".import-bbbbbbbbbbbb.lock"
    dead.touch()  # an import killed between making its lock file and locking it, a moment ago
    report = data.clean_leftovers()
    assert not dead.exists() and report.folders == []
    # an import making its claim holds the claims lock: a cleanup meanwhile waits, then sees it alive
    from imgcls.store import leftovers

    with workspace.file_lock(leftovers.CLAIMS_LOCK):
        started = threading.Thread(target=data.clean_leftovers)
        started.start()
        started.join(0.3)
        assert started.is_alive()  # waiting for the claim to be made
        claim = leftovers.claim_import("pets", adding=False)
    started.join(10)
    assert claim.lock.exists()  # locked and described before the cleanup could look
    claim.release()


def test_the_first_visit_after_a_crash_removes_a_dead_imports_leftovers(app_home):
    from streamlit.testing.v1 import AppTest

    from imgcls.store import workspace
    from imgcls.ui.common import tidy

    staging = workspace.datasets_dir() / ".import-deadbeef0000"
    staging.mkdir(parents=True)
    (staging / "x.png").write_bytes(b"\x89PNG left by a killed import")
    tidy._done.discard(str(workspace.home()))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60).run()
    assert not staging.exists()
    assert any("interrupted imports" in t.value for t in at.toast)
    assert not at.exception
