"""The job line across users, with real processes: first come first served across workspaces, at most N
running per person without holding up the others, moving and cancelling waiting jobs, the wait estimated
from finished jobs, the place each job is shown, and the line's view for teachers and admins."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls import jobs
from imgcls.jobs import history, slots
from imgcls.store import access, quotas, workspace
from imgcls.ui.common import jobview
from authhelpers import write_config
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
SLEEPER = "import time; time.sleep(120)"


def _wait(what: str, check, timeout: float = 30.0):
    return wait_for(what, check, timeout)


def appender(order: Path, name: str) -> str:
    """A job that writes its name to `order` as it starts, and ends."""
    return f"open({str(order)!r}, 'a').write('{name}\\n')"


@pytest.fixture
def line(imgcls_home, monkeypatch):
    """submit(user, name, script): a job of `user`'s workspace ("" for the one person's) in the line, as the
    pages submit them; every job is stopped afterwards."""
    monkeypatch.setenv("IMGCLS_DEVICES", "cpu")
    started: list[Path] = []

    def submit(user: str, name: str, script: str = SLEEPER) -> Path:
        root = access.users_root() / user if user else workspace.server_root()
        with workspace.use(root):
            path = workspace.home() / "jobs-under-test" / name / "status.json"
            path.parent.mkdir(parents=True)
            jobs.submit(path, [], "cpu", python_args=["-c", script], label=f"run/{name}")
        started.append(path)
        return path
    yield submit
    for path in started:
        jobs.stop(path, grace_s=0.5)


def state(path: Path) -> str:
    return jobs.status(path).get("state")


def ticket(path: Path) -> int:
    return _wait("its ticket", lambda: (jobs.status(path).get("wait") or {}).get("ticket"))


def test_one_users_pile_does_not_hold_up_another_user(line, imgcls_home, monkeypatch):
    monkeypatch.setenv("IMGCLS_CPU_JOBS", "2")
    write_config(imgcls_home, "[quotas]\njobs_running = 1\n")
    a1 = line("alice", "a1")
    _wait("alice's first job to run", lambda: state(a1) == "running")
    a2, a3 = line("alice", "a2"), line("alice", "a3")
    _wait("alice's others in line", lambda: jobs.status(a3).get("queue") == 2)
    b1 = line("bob", "b1")
    _wait("bob's job to take the free slot", lambda: state(b1) == "running")
    assert jobs.status(b1)["slot"] == "cpu#1" and state(a2) == state(a3) == "queued"
    assert [job["owner"] for job in slots.running_jobs()] == ["alice", "bob"]
    assert [(job["owner"], job["place"], job["held"]) for job in slots.waiting()] == \
        [("alice", 1, True), ("alice", 2, True)]
    _wait("alice's next job told its place", lambda: jobs.status(a2).get("queue") == 1)
    said = jobview.queue_text(jobs.status(a2), "cpu")
    assert "number 1 in the queue" in said and "You already run the most jobs allowed at once here" in said
    jobs.stop(a1, grace_s=0.5)
    _wait("alice's next job to run", lambda: state(a2) == "running")
    assert state(a3) == "queued" and state(b1) == "running"


def test_without_a_cap_a_users_jobs_fill_the_free_slots(line, imgcls_home, monkeypatch):
    monkeypatch.setenv("IMGCLS_CPU_JOBS", "2")
    write_config(imgcls_home, "[quotas]\njobs_running = 0\n")  # 0: no limit
    a1, a2 = line("alice", "a1"), line("alice", "a2")
    _wait("both of alice's jobs to run", lambda: state(a1) == state(a2) == "running")


def test_jobs_of_several_users_start_first_come_first_served(line, tmp_path):
    order = tmp_path / "order.txt"
    blocker = line("carol", "blocker")
    _wait("the first job", lambda: state(blocker) == "running")
    names = [("alice", "a1"), ("bob", "b1"), ("alice", "a2"), ("bob", "b2")]
    paths = [line(user, name, appender(order, name)) for user, name in names]
    _wait("all four in line", lambda: all(jobs.status(p).get("queue") for p in paths))
    assert [jobs.status(p)["queue"] for p in paths] == [1, 2, 3, 4]
    assert [job["owner"] for job in slots.waiting()] == ["alice", "bob", "alice", "bob"]
    jobs.stop(blocker, grace_s=0.5)
    _wait("all four to run", lambda: order.exists() and len(order.read_text().split()) == 4, timeout=60)
    assert order.read_text().split() == [name for _, name in names]


def test_a_moved_job_keeps_its_new_place_and_a_cancelled_one_leaves(line, tmp_path):
    order = tmp_path / "order.txt"
    blocker = line("carol", "blocker")
    _wait("the first job", lambda: state(blocker) == "running")
    q1, q2, q3 = (line(user, name, appender(order, name)) for user, name in
                  (("alice", "q1"), ("bob", "q2"), ("dan", "q3")))
    _wait("three in line", lambda: jobs.status(q3).get("queue") == 3)
    assert slots.move(ticket(q3), 1) == 1
    assert [job["status"] for job in slots.waiting()] == [str(q3), str(q1), str(q2)]
    _wait("the moved job to be told", lambda: jobs.status(q3).get("queue") == 1 and jobs.status(q2)["queue"] == 3)
    # the order is on disk: another process (a restarted server) reads the same line
    out = subprocess.run([sys.executable, "-c", "import json; from imgcls.jobs import slots; "
                          "print(json.dumps([j['status'] for j in slots.waiting()]))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [str(q3), str(q1), str(q2)]
    assert jobs.stop(q1)["state"] == "cancelled"
    assert [job["status"] for job in slots.waiting()] == [str(q3), str(q2)]
    assert slots.move(ticket(q3) + 1000, 1) is None  # no such ticket: nothing moves
    jobs.stop(blocker, grace_s=0.5)
    _wait("both to run", lambda: order.exists() and len(order.read_text().split()) == 2, timeout=60)
    assert order.read_text().split() == ["q3", "q2"]


def test_the_wait_is_estimated_from_finished_jobs_and_said_plainly(line):
    blocker = line("carol", "blocker")
    _wait("the first job", lambda: state(blocker) == "running")
    q1, q2 = line("alice", "q1"), line("bob", "q2")
    _wait("both in line", lambda: jobs.status(q2).get("queue") == 2)
    assert slots.estimate(ticket(q1)) is None and slots.estimate(ticket(q2)) is None  # nothing finished yet
    assert "There is no estimate of the wait yet" in jobview.queue_text(jobs.status(q1), "cpu")
    for seconds in (50, 60, 70, 600, 65):  # the median: one very long run does not move it much
        history.record("run", "cpu", seconds)
    history.record("health", "cpu", 5)  # another kind: not used for runs
    taken = slots.holders()["cpu#0"]["taken"]
    assert slots.estimate(ticket(q1)) == pytest.approx(taken + 65 - time.time(), abs=1.0)
    assert slots.estimate(ticket(q2)) == pytest.approx(taken + 130 - time.time(), abs=1.0)
    look = slots.outlook(ticket(q2))
    assert look["from"] == 5 and look["kind"] == "run" and look["place"] == 2
    _wait("the estimate in the status file", lambda: (jobs.status(q2).get("wait") or {}).get("start"))
    said = jobview.queue_text(jobs.status(q2), "cpu")
    assert said.startswith("Waiting for the CPU, number 2 in the queue, about 2 min (from the last 5 runs here)")
    jobs.write_status(blocker, eta_seconds=600)  # a running job's own estimate of the time it has left wins
    assert slots.estimate(ticket(q1)) == pytest.approx(600, abs=2.0)
    assert slots.outlook(ticket(q1))["from"] == 0
    assert [job["estimate"] is not None for job in slots.waiting()] == [True, True]


def test_place_counts_only_the_jobs_that_start_before_it(line, imgcls_home, monkeypatch):
    monkeypatch.setenv("IMGCLS_CPU_JOBS", "2")
    write_config(imgcls_home, "[quotas]\njobs_running = 1\n")
    for _ in range(3):
        history.record("run", "cpu", 60)
    a1 = line("alice", "a1")
    _wait("alice's job", lambda: state(a1) == "running")
    b1 = line("bob", "b1")
    _wait("bob's job", lambda: state(b1) == "running")
    a2, c1 = line("alice", "a2"), line("carol", "c1")
    _wait("both in line", lambda: jobs.status(c1).get("queue"))
    # both running jobs end in about a minute, alice's first: her next job is ahead of carol's
    _wait("the places", lambda: (jobs.status(a2).get("queue"), jobs.status(c1).get("queue")) == (1, 2))
    jobs.write_status(a1, eta_seconds=3600)  # now bob's ends first, and alice's next waits for her own
    _wait("carol moving ahead", lambda: (jobs.status(c1).get("queue"), jobs.status(a2).get("queue")) == (1, 2))
    assert slots.estimate(ticket(c1)) < slots.estimate(ticket(a2))
    assert (jobs.status(a2).get("wait") or {}).get("held") is True


def test_a_job_that_finished_leaves_its_duration_and_others_do_not(line):
    vanished = line("alice", "vanished", "pass")  # ends without saying it finished: reads as interrupted
    _wait("it to end", lambda: state(vanished) == "interrupted" and not slots.holders())
    stopped = line("alice", "stopped")
    _wait("it to run", lambda: state(stopped) == "running")
    jobs.stop(stopped, grace_s=0.5)
    _wait("its slot to free", lambda: slots.holders() == {})
    assert history.entries() == []  # neither finished its work: nothing to learn from
    status = access.users_root().resolve() / "bob" / "jobs-under-test" / "real" / "status.json"
    real = line("bob", "real", "import time; from pathlib import Path; from imgcls.jobs import runner\n"
                               f"with runner.running(Path({str(status)!r}), label='run/real'):\n"
                               "    time.sleep(0.5)")
    assert real == status
    _wait("it to finish", lambda: state(real) == "done")
    _wait("its duration", lambda: slots.holders() == {} and history.entries())
    [entry] = history.entries()
    assert entry["kind"] == "run" and entry["device"] == "cpu" and 0.5 <= entry["seconds"] < 20


def test_the_limit_on_jobs_in_line_refuses_and_the_running_limit_does_not(imgcls_home, line, monkeypatch):
    write_config(imgcls_home, "[quotas]\njobs_running = 1\njobs_queued = 2\n")
    first = line("", "first")
    jobs.index.note(first, "run/first")
    _wait("it to run", lambda: state(first) == "running")
    quotas.check_job_start()  # one waiting or running, two allowed: a second job waits in line
    second = line("", "second")
    jobs.index.note(second, "health/second")
    with pytest.raises(quotas.QuotaError) as refused:
        quotas.check_job_start()
    assert str(refused.value) == ("You already have 2 jobs waiting or running, the most allowed here: wait for "
                                  "one to finish or stop one on the Train or Review page.")
    use = quotas.usage()
    assert (use["jobs"], use["jobs_running"], use["jobs_waiting"]) == (2, 1, 1)


# --- the view for teachers and admins --------------------------------------------------------------


def _queue_page():
    import os

    from imgcls.ui.common import queueview

    owners = os.environ.get("QUEUE_OWNERS")
    queueview.show_queue(set(owners.split(",")) if owners else None, {"alice": "Alice A", "bob": "Bob B"},
                         os.environ.get("QUEUE_MANAGE") == "1", "q")


def open_queue(monkeypatch, owners: str = "", manage: bool = True) -> AppTest:
    monkeypatch.setenv("QUEUE_OWNERS", owners)
    monkeypatch.setenv("QUEUE_MANAGE", "1" if manage else "0")
    return AppTest.from_function(_queue_page, default_timeout=60).run()


def test_a_manager_sees_the_line_moves_a_job_up_and_cancels_one(line, monkeypatch):
    blocker = line("carol", "blocker")
    _wait("the first job", lambda: state(blocker) == "running")
    a1, b1 = line("alice", "a1"), line("bob", "b1")
    _wait("both in line", lambda: jobs.status(b1).get("queue") == 2)
    at = open_queue(monkeypatch)
    assert not at.exception
    running, waiting = (d.value for d in at.dataframe)
    assert list(running["Who"]) == ["carol"] and list(running["Running"]) == ["Training run blocker"]
    assert list(waiting["Who"]) == ["Alice A", "Bob B"] and list(waiting["Place"]) == [1, 2]
    assert list(waiting["Starts in"]) == ["not known yet", "not known yet"]
    at.selectbox(key="q.pick").set_value(ticket(b1)).run()
    at.button(key="q.up").click().run()
    assert [job["status"] for job in slots.waiting()] == [str(b1), str(a1)]
    assert list(at.dataframe[1].value["Who"]) == ["Bob B", "Alice A"]
    at.button(key="q.cancel").click().run()
    assert not at.exception
    assert state(b1) == "cancelled" and "Cancelled by a teacher" in jobs.status(b1)["message"]
    assert [job["status"] for job in slots.waiting()] == [str(a1)]
    assert any("Cancelled it" in s.value for s in at.success)


def test_a_class_view_shows_only_its_students_and_no_controls_without_the_right(line, monkeypatch):
    blocker = line("carol", "blocker")
    _wait("the first job", lambda: state(blocker) == "running")
    line("alice", "a1")
    b1 = line("bob", "b1")
    _wait("both in line", lambda: jobs.status(b1).get("queue") == 2)
    at = open_queue(monkeypatch, owners="bob", manage=False)
    assert not at.exception
    [waiting] = [d.value for d in at.dataframe]  # carol's running job is not theirs: no running table
    assert list(waiting["Who"]) == ["Bob B"] and list(waiting["Place"]) == [2]  # the true place in the line
    assert not at.button and not at.selectbox
