"""Quotas: each limit refused with its sentence at the real import and job entry points, admin overrides,
0 meaning no limit, and usage measured from the file system."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imgcls.store import access, quotas, runs, workspace
from imgcls.lab import experiments
from imgcls.health import job as healthjob
from imgcls import jobs
from imgcls.train import runjobs
from imgcls.ingest.imports import import_files, import_folder, import_sample, import_zip
from imgcls.lab.experiments import ExperimentConfig
from authhelpers import write_config

pytestmark = pytest.mark.usefixtures("imgcls_home")


def limit(home: Path, **values) -> None:
    """The operator's [quotas] in imgcls.toml."""
    write_config(home, "[quotas]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))


def pets(mk, name="pets", n=4, start=0) -> str:
    import_zip(mk.zip(mk.class_members({"cats": n // 2, "dogs": n - n // 2}, start=start)), name)
    return name


def unchanged(home: Path, before: list[str], mk) -> None:
    """Nothing was written: the same datasets, no staging folder."""
    assert mk.workspace_entries(home) == before


@pytest.fixture
def sleeper():
    """A process that stays alive for the test: what a job's status file points at while it runs."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def occupy(kind: str, dataset: str, pid: int) -> str:
    """Record a running job of one kind the way its own job system does, held by process `pid`."""
    if kind == "run":
        from imgcls.train.run import TrainConfig, prepare_run

        run_id = prepare_run(TrainConfig(dataset, strategy="linear", epochs=1))
        runs.write_status(run_id, state="running", pid=pid)
        jobs.index.note(runs.status_path(run_id), f"run/{run_id}")
        return f"run/{run_id}"
    if kind == "health":
        jobs.write_status(healthjob.status_path(dataset), state="running", pid=pid, started=time.time())
        jobs.index.note(healthjob.status_path(dataset), f"health/{dataset}")
        return f"health/{dataset}"
    exp_id = experiments.prepare(ExperimentConfig(kind="transfer", dataset=dataset))
    jobs.write_status(experiments.status_path(exp_id), state="running", pid=pid)
    jobs.index.note(experiments.status_path(exp_id), f"experiment/{exp_id}")
    return f"experiment/{exp_id}"


# --- datasets -------------------------------------------------------------------------------------


def test_a_new_dataset_over_the_count_is_refused_adding_is_not(imgcls_home, mk):
    limit(imgcls_home, datasets=2)
    pets(mk, "one")
    import_files([("a.png", mk.png(50))], "two", "cats")
    before = mk.workspace_entries(imgcls_home)
    sentence = "You have 2 datasets, the most allowed here: delete one you no longer need on the Data page."
    with pytest.raises(quotas.QuotaError) as refused:
        import_zip(mk.zip(mk.class_members({"x": 2}, start=60)), "three")
    assert str(refused.value) == sentence
    with pytest.raises(quotas.QuotaError, match="You have 2 datasets"):
        import_sample("shapes")
    with pytest.raises(quotas.QuotaError, match="You have 2 datasets"):
        import_files([("b.png", mk.png(61))], "three", "cats")
    unchanged(imgcls_home, before, mk)
    assert import_files([("c.png", mk.png(62))], "two", "dogs").images == 1  # adding to one is fine


# --- images per dataset ---------------------------------------------------------------------------


def test_adding_images_over_the_dataset_limit_is_refused_before_writing(imgcls_home, mk):
    limit(imgcls_home, images_per_dataset=5)
    pets(mk, n=4)
    files_before = sorted(p.name for p in (workspace.dataset_dir("pets") / "images").iterdir())
    with pytest.raises(quotas.QuotaError) as refused:
        import_files([("x.png", mk.png(70)), ("y.png", mk.png(71))], "pets", "cats")
    assert str(refused.value) == ("A dataset can hold at most 5 images; this import would make 'pets' 6. "
                                  "Import into a new dataset or exclude and remove images first.")
    assert len(workspace.read_manifest("pets")) == 4
    assert sorted(p.name for p in (workspace.dataset_dir("pets") / "images").iterdir()) == files_before
    assert import_files([("z.png", mk.png(72))], "pets", "cats").images == 1  # up to the limit is fine


def test_a_new_dataset_bigger_than_the_limit_is_refused(imgcls_home, tmp_path, mk):
    limit(imgcls_home, images_per_dataset=3)
    folder = tmp_path / "photos"
    for name, data in mk.class_members({"a": 2, "b": 2}):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with pytest.raises(quotas.QuotaError, match="at most 3 images; this import would make 'photos' 4. Split"):
        import_folder(folder, "photos")
    assert mk.workspace_entries(imgcls_home) == []


def test_excluded_images_count_until_removed(imgcls_home, mk):
    from imgcls.store import journal

    limit(imgcls_home, images_per_dataset=4)
    pets(mk, n=4)
    path = workspace.read_manifest("pets")["path"].iloc[0]
    journal.edit("pets", "exclude", [path])
    with pytest.raises(quotas.QuotaError, match="would make 'pets' 5"):
        import_files([("x.png", mk.png(80))], "pets", "cats")
    journal.purge_excluded("pets")
    assert import_files([("x.png", mk.png(80))], "pets", "cats").images == 1


# --- disk -----------------------------------------------------------------------------------------


def test_disk_limit_refuses_imports_and_jobs_and_a_deletion_frees_it_at_once(imgcls_home, mk):
    pets(mk, n=6)
    used = quotas.disk_bytes(fresh=True)
    quotas.set_limits(None, disk_gb=used * 0.9 / 1e9)
    shown = quotas.size_text(used * 0.9)
    with pytest.raises(quotas.QuotaError) as refused:
        import_files([("x.png", mk.png(90))], "more", "cats")
    now = quotas.size_text(quotas.disk_bytes(fresh=True))  # the limits file itself counts too
    assert str(refused.value) == (f"This import needs {quotas.size_text(len(mk.png(90)))} more, and your workspace "
                                  f"already uses {now} of its {shown}: delete a dataset you no longer need on the "
                                  "Data page to free space.")
    with pytest.raises(quotas.QuotaError) as refused:
        healthjob.start("pets")
    assert str(refused.value) == (f"Your workspace uses {now} of its {shown}: delete a dataset "
                                  "you no longer need on the Data page to free space.")
    assert healthjob.job_status("pets") == {}  # nothing was started
    workspace.delete_dataset("pets")  # the cached size is older than this: refusing measures again
    assert import_files([("x.png", mk.png(90))], "more", "cats").images == 1


# --- jobs running ---------------------------------------------------------------------------------


def start_job(kind: str, dataset: str):
    if kind == "run":
        from imgcls.train.run import TrainConfig, prepare_run

        run_id = prepare_run(TrainConfig(dataset, strategy="linear", epochs=1))
        return run_id, lambda: runjobs.start(run_id)
    if kind == "health":
        return None, lambda: healthjob.start(dataset)
    return None, lambda: experiments.start(ExperimentConfig(kind="transfer", dataset=dataset))


@pytest.mark.parametrize("running", ["run", "health", "experiment"])
@pytest.mark.parametrize("starting", ["run", "health", "experiment"])
def test_a_job_over_the_limit_of_jobs_in_line_is_refused(imgcls_home, mk, sleeper, running, starting):
    limit(imgcls_home, jobs_queued=1)
    pets(mk, n=6)
    pets(mk, "other", n=6, start=50)
    held = occupy(running, "pets", sleeper)
    assert quotas.running_jobs() == [held]
    exps_before = sorted(p.name for p in experiments.experiments_dir().iterdir())
    run_id, start = start_job(starting, "other")
    page = {"run": "Train", "health": "Review", "experiment": "Learn"}[running]
    with pytest.raises(quotas.QuotaError) as refused:
        start()
    assert str(refused.value) == ("You already have 1 job waiting or running, the most allowed here: wait for "
                                  f"one to finish or stop it on the {page} page.")
    if run_id:  # the prepared run says why it never started, and is no longer waiting
        assert runs.read_status(run_id)["state"] == "failed"
        assert runs.read_status(run_id)["message"] == str(refused.value)
    assert healthjob.job_status("other") == {}
    assert sorted(p.name for p in experiments.experiments_dir().iterdir()) == exps_before
    assert quotas.running_jobs() == [held]


def test_a_job_started_for_real_counts_and_resume_is_refused_too(imgcls_home, mk):
    from imgcls.train.run import TrainConfig, prepare_run

    limit(imgcls_home, jobs_queued=1)
    pets(mk, n=6)
    run_id = prepare_run(TrainConfig("pets", strategy="linear", epochs=1))
    runs.write_status(run_id, state="running", pid=2**22 + 12345)  # its process is gone: interrupted
    assert quotas.running_jobs() == []
    healthjob.start("pets")
    try:
        assert quotas.running_jobs() == ["health/pets"]
        with pytest.raises(quotas.QuotaError, match="You already have 1 job waiting or running"):
            experiments.start(ExperimentConfig(kind="transfer", dataset="pets"))
        with pytest.raises(quotas.QuotaError, match="stop it on the Review page"):
            runjobs.resume(run_id)
        assert runs.read_status(run_id)["state"] == "interrupted"  # still resumable later
    finally:
        healthjob.stop_job("pets")
    assert quotas.running_jobs() == []


def test_jobs_of_another_workspace_do_not_count(imgcls_home, mk, sleeper):
    limit(imgcls_home, jobs_queued=1)
    other = access.users_root() / "someone"
    with workspace.use(other):
        pets(mk, n=4)
        occupy("health", "pets", sleeper)
        assert quotas.running_jobs() == ["health/pets"]
    assert quotas.running_jobs() == []
    quotas.check_job_start()  # nothing of this workspace runs


def test_an_experiment_and_its_training_runs_count_as_one_job(imgcls_home, mk, sleeper):
    limit(imgcls_home, jobs_queued=2)
    pets(mk, n=6)
    held = occupy("experiment", "pets", sleeper)
    occupy("run", "pets", sleeper)  # a thorough experiment trains in its own process
    assert quotas.running_jobs() == [held]
    quotas.check_job_start()


# --- overrides and 0 ------------------------------------------------------------------------------


def test_admin_overrides_beat_the_config_and_a_user_override_beats_the_default(imgcls_home, mk):
    limit(imgcls_home, datasets=5, images_per_dataset=100)
    quotas.set_limits(None, datasets=1)
    assert quotas.limits().datasets == 1 and quotas.limits().images_per_dataset == 100
    pets(mk, "one")
    with pytest.raises(quotas.QuotaError, match="You have 1 dataset, the most"):
        pets(mk, "two", start=10)
    alice, bob = access.users_root() / "alice-key", access.users_root() / "bob-key"
    quotas.set_limits("alice-key", datasets=3)
    with workspace.use(alice):
        assert quotas.limits().datasets == 3
        pets(mk, "a1"), pets(mk, "a2", start=10), pets(mk, "a3", start=20)
        with pytest.raises(quotas.QuotaError, match="You have 3 datasets"):
            pets(mk, "a4", start=30)
    with workspace.use(bob):
        pets(mk, "b1")
        with pytest.raises(quotas.QuotaError, match="You have 1 dataset,"):
            pets(mk, "b2", start=10)
    quotas.set_limits("alice-key", datasets=None)  # back to everyone's limit
    assert quotas.limits(alice).datasets == 1
    assert json.loads((imgcls_home / "quotas.json").read_text()) == {"default": {"datasets": 1}, "users": {}}


def test_zero_means_no_limit(imgcls_home, mk, sleeper):
    limit(imgcls_home, datasets=1, images_per_dataset=2, disk_gb=0.000001, jobs_queued=1)
    quotas.set_limits(None, datasets=0, images_per_dataset=0, disk_gb=0, jobs_queued=0)
    pets(mk, "one", n=4)
    pets(mk, "two", n=4, start=10)
    occupy("health", "one", sleeper)
    occupy("experiment", "two", sleeper)
    assert len(quotas.running_jobs()) == 1  # one process holds both records
    quotas.check_job_start()
    quotas.check_disk(10**12)
    assert workspace.list_datasets() == ["one", "two"]


def test_operator_zero_means_no_limit_too(imgcls_home, mk):
    limit(imgcls_home, datasets=0, images_per_dataset=0)
    for i in range(3):
        pets(mk, f"d{i}", n=4, start=10 * i)
    assert len(workspace.list_datasets()) == 3


@pytest.mark.parametrize("values,match", [
    ({"datasets": -1}, "datasets must be a number of zero or more"),
    ({"disk_gb": "ten"}, "disk_gb must be a number of zero or more"),
    ({"jobs_running": True}, "jobs_running must be a number"),
    ({"datasets": 2.5}, "datasets must be a whole number"),
    ({"disk_gb": float("nan")}, "disk_gb must be a number"),
    ({"bananas": 3}, "'bananas' is not a limit"),
])
def test_set_limits_refuses_bad_values_and_saves_nothing(imgcls_home, values, match):
    quotas.set_limits(None, datasets=7)
    with pytest.raises(quotas.QuotaError, match=match):
        quotas.set_limits(None, **{"jobs_running": 3, **values})  # one good value: still nothing saved
    assert quotas.limits().datasets == 7 and quotas.limits().jobs_running == 2


def test_set_limits_from_many_threads_keeps_every_change(imgcls_home):
    keys = [f"user-{i}" for i in range(12)]
    threads = [threading.Thread(target=quotas.set_limits, args=(k,), kwargs={"datasets": i + 1})
               for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = json.loads((imgcls_home / "quotas.json").read_text())["users"]
    assert saved == {k: {"datasets": i + 1} for i, k in enumerate(keys)}
    assert not list(imgcls_home.glob(".quotas.json.*"))  # no temp file left


def test_a_user_key_that_leaves_the_users_folder_is_refused(imgcls_home):
    for key in ("../x", ".hidden", ""):
        with pytest.raises(quotas.QuotaError, match="is not a user's workspace folder"):
            quotas.set_limits(key, datasets=1)


# --- usage ----------------------------------------------------------------------------------------


def test_usage_counts_from_the_file_system_and_caches_the_disk_walk(imgcls_home, mk):
    pets(mk, n=4)
    pets(mk, "big", n=6, start=20)
    (imgcls_home / "users" / "someone").mkdir(parents=True)
    (imgcls_home / "users" / "someone" / "theirs.bin").write_bytes(b"x" * 5000)  # not this workspace's
    expected = sum(p.stat().st_size for p in imgcls_home.rglob("*")
                   if p.is_file() and "users" not in p.relative_to(imgcls_home).parts)
    use = quotas.usage()
    assert use["disk_bytes"] == expected
    assert use["datasets"] == 2 and use["images"] == {"big": 6, "pets": 4} and use["images_total"] == 10
    assert use["runs"] == 0 and use["jobs"] == use["jobs_running"] == use["jobs_waiting"] == 0
    (imgcls_home / "extra.bin").write_bytes(b"y" * 1234)
    assert quotas.usage()["disk_bytes"] == expected  # within the cache's life: no new walk
    quotas.forget()
    assert quotas.usage()["disk_bytes"] == expected + 1234
    someone = quotas.usage(imgcls_home / "users" / "someone")
    assert someone["disk_bytes"] >= 5000 and someone["datasets"] == 0


def test_image_counts_survive_notes_with_line_breaks(imgcls_home, mk):
    from imgcls.store import journal

    pets(mk, n=4)
    path = workspace.read_manifest("pets")["path"].iloc[0]
    journal.edit("pets", "note", [path], "two\nlines, and \"quotes\"")
    assert quotas.image_count("pets") == 4
