"""Training engine on tiny generated data, on the CPU: strategies, caches, run folder, jobs."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.vision import features
from imgcls import jobs
from imgcls.train import runjobs
from imgcls.store import runs, workspace
from imgcls.jobs import procs
from imgcls.ingest.imports import import_files
from imgcls.train.heads import class_weights
from imgcls.train.loops import suggest_lr, train_one_epoch
from imgcls.train.run import TrainConfig, TrainError, prepare_run, resolve_device, run

pytestmark = pytest.mark.usefixtures("imgcls_home")
SMALL = {"img_size": 64, "batch_size": 8}  # tiny images keep each run to a few seconds on 2 cores


def _png(colour, seed: int, spread: int = 40, side: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-spread, spread, (side, side, 3)), 0, 255)
    arr = arr.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(name="toy", per_class=8, classes=(("red", (220, 40, 40)), ("blue", (40, 40, 220))), **look):
    seed = 0
    for label, colour in classes:
        files = []
        for i in range(per_class):
            files.append((f"{label}{i}.png", _png(colour, seed, **look)))
            seed += 1
        import_files(files, name, label)
    return name


def _train(strategy, **kw):
    run_id = prepare_run(TrainConfig(dataset="toy", strategy=strategy, **{**SMALL, **kw}))
    return run_id, run(run_id, echo=lambda _: None)


@pytest.mark.parametrize("strategy,epochs", [("linear", 5), ("finetune", 1), ("full", 1), ("scratch", 2)])
def test_each_strategy_trains_and_fills_the_run_folder(strategy, epochs):
    make_dataset()
    run_id, result = _train(strategy, epochs=epochs, head_epochs=3)
    folder = runs.run_dir(run_id)
    for name in ("config.json", "status.json", "metrics.jsonl", "model.safetensors"):
        assert (folder / name).exists(), name
    status = runs.read_status(run_id)
    assert status["state"] == "done" and status["progress"] == 1.0
    assert 0.0 <= result["val_accuracy"] <= 1.0 and result["device"] == resolve_device("auto")
    config = runs.read_config(run_id)
    assert config["classes"] == ["blue", "red"] and config["augment_pipeline"]["transform"]
    epochs_seen = [m for m in runs.read_metrics(run_id) if m["kind"] == "epoch" and m["stage"] != "head"]
    if strategy != "linear":
        assert len(epochs_seen) == epochs and (folder / "last.pt").exists()


def test_linear_probe_separates_easy_classes():
    make_dataset(per_class=10)
    _, result = _train("linear", epochs=40)
    assert result["val_accuracy"] == 1.0


def test_feature_cache_is_hit_on_a_second_run(monkeypatch, plain_torch):
    make_dataset()
    _train("linear", epochs=2)
    calls = []
    real = features.embed
    monkeypatch.setattr(features, "embed", lambda m, x: calls.append(len(x)) or real(m, x))
    _train("linear", epochs=2)
    assert calls == []
    _train("linear", epochs=2, img_size=72)  # other preprocessing: other key, so embedded again
    assert sum(calls) > 0


def test_datasets_that_cannot_train_are_refused_before_anything_starts():
    make_dataset("one", classes=(("red", (220, 40, 40)),))
    with pytest.raises(TrainError, match="two classes"):
        prepare_run(TrainConfig(dataset="one"))
    make_dataset("noval", per_class=1)  # one image per class: training split only
    with pytest.raises(TrainError, match="validation split is empty"):
        prepare_run(TrainConfig(dataset="noval"))
    assert runs.list_runs() == []


def test_class_missing_from_training_is_refused():
    make_dataset()
    df = workspace.read_manifest("toy")
    df.loc[(df["label"] == "red") & (df["split"] == "train"), "split"] = "test"
    workspace.write_manifest(workspace.dataset_dir("toy"), df)
    with pytest.raises(TrainError, match="'red'"):
        prepare_run(TrainConfig(dataset="toy"))


def test_status_goes_from_queued_to_running_to_done_in_a_background_job():
    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    assert runs.read_status(run_id)["state"] == "queued"
    runjobs.start(run_id)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = runs.read_status(run_id)["state"]
        seen.add(state)
        if state in runs.FINAL_STATES:
            break
        time.sleep(0.05)
    assert state == "done", runs.read_status(run_id)
    assert "running" in seen or "queued" in seen


def _wait(run_id, predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate(runs.read_status(run_id)):
            return runs.read_status(run_id)
        time.sleep(0.1)
    raise AssertionError(f"timed out; status {runs.read_status(run_id)}")


def test_stop_ends_a_job_within_two_seconds_and_keeps_the_best_model():
    make_dataset()
    # a DataLoader worker too: stopping must not turn its exit into a failure
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="full", epochs=200, patience=200, workers=1, **SMALL))
    runjobs.start(run_id)
    _wait(run_id, lambda s: (runs.run_dir(run_id) / "model.safetensors").exists())
    start = time.monotonic()
    status = runjobs.stop(run_id)
    assert time.monotonic() - start < 2.5
    assert status["state"] == "cancelled"
    assert not procs.alive(status["pid"])
    assert (runs.run_dir(run_id) / "model.safetensors").exists()


def test_a_killed_job_is_interrupted_and_resumes_where_it_stopped():
    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="finetune", epochs=40, patience=40,
                                     head_epochs=2, **SMALL))
    runjobs.start(run_id)
    _wait(run_id, lambda s: (s.get("epoch") or 0) >= 2 and (runs.run_dir(run_id) / "last.pt").exists()
          and s.get("message", "").endswith("done"))
    os.killpg(runs.read_status(run_id)["pid"], signal.SIGKILL)
    _wait(run_id, lambda s: s["state"] == "interrupted")
    assert runs.mark_interrupted() == [run_id]
    config = runs.read_config(run_id)
    done_before = max(m["epoch"] for m in runs.read_metrics(run_id) if m.get("stage") == "finetune")
    path = runs.run_dir(run_id) / "config.json"
    workspace.atomic_write_json(path, {**config, "epochs": done_before + 1})
    result = run(run_id, echo=lambda _: None, resume=True)
    epochs = [m["epoch"] for m in runs.read_metrics(run_id) if m.get("stage") == "finetune"]
    assert epochs == list(range(1, done_before + 2))  # continued, not restarted
    assert result["epochs"] == done_before + 1 and runs.read_status(run_id)["state"] == "done"


def test_a_second_job_queues_while_the_device_is_busy():
    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=2, **SMALL))
    with jobs.slots.hold("cpu"):
        runjobs.start(run_id)
        time.sleep(3)
        status = runs.read_status(run_id)
        assert status["state"] == "queued" and runjobs.queue_position(run_id) == 1
    assert _wait(run_id, lambda s: s["state"] in runs.FINAL_STATES)["state"] == "done"


def test_lr_finder_run_suggests_a_learning_rate():
    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", task="lr_find", **SMALL))
    result = run(run_id, echo=lambda _: None)
    found = json.loads((runs.run_dir(run_id) / "lr_find.json").read_text())
    assert len(found["lrs"]) == len(found["losses"]) > 10
    assert found["lrs"][0] <= result["suggestion"] <= found["lrs"][-1]


def test_suggest_lr_finds_the_steepest_descent():
    lrs = list(np.logspace(-6, 0, 50))
    # loss falls fastest around 1e-3, bottoms out near 1e-1
    losses = [2.0 - 1.5 / (1 + np.exp(-(np.log10(lr) + 3) * 3)) for lr in lrs]
    assert 3e-4 < suggest_lr(lrs, losses) < 3e-3


def test_nan_loss_stops_with_a_message():
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    loader = [(torch.zeros(2, 4), torch.tensor([0, 1]))]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    with pytest.raises(FloatingPointError, match="learning rate"):
        train_one_epoch(model, loader, opt, sched, torch.nn.CrossEntropyLoss(), lambda x: x,
                        should_stop=lambda: False)


def test_imbalance_weighting_switches_on_past_three_to_one():
    assert class_weights(np.array([0] * 30 + [1] * 10), 2) is None
    weights = class_weights(np.array([0] * 40 + [1] * 10), 2)
    assert weights is not None and weights[1] > weights[0]


def test_two_processes_under_torchrun_finish_with_identical_weights(imgcls_home):
    import subprocess
    import sys
    from pathlib import Path

    make_dataset(per_class=8)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "imgcls",
         "train", "--dataset", "toy", "--strategy", "full", "--epochs", "2", "--img-size", "64",
         "--batch-size", "4", "--device", "cpu", "--json"],
        cwd=root, env=dict(os.environ, IMGCLS_HOME=str(imgcls_home), OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["processes"] == 2
    folder = runs.run_dir(result["run"])
    digests = {json.loads((folder / f"ddp-rank{r}.json").read_text())["weights_sha256"] for r in (0, 1)}
    assert len(digests) == 1
    assert runs.list_runs() == [result["run"]]  # rank 0 alone created the run folder
    assert runs.read_status(result["run"])["state"] == "done"


def test_training_records_exactly_the_saved_augmentation_pipeline():
    from imgcls.augment import spec as augspec
    from imgcls.augment.pipeline import pipeline_to_dict, save_pipeline

    make_dataset()
    chosen = augspec.build([{"name": "VerticalFlip", "p": 0.7}, {"name": "GaussNoise"}], img_size=64)
    save_pipeline("toy", chosen)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="finetune", **SMALL))
    assert runs.read_config(run_id)["augment_pipeline"] == pipeline_to_dict(chosen)
    other = prepare_run(TrainConfig(dataset="toy", strategy="finetune", augment="none", **SMALL))
    assert runs.read_config(other)["augment_pipeline"]["transform"]["transforms"] == []


# --- the data a run saw, and runs that repeat exactly -------------------------------------------------


def test_a_run_of_characters_without_a_saved_pipeline_records_the_light_preset_without_the_mirror():
    def transforms(run_id):
        return [t["__class_fullname__"].split(".")[-1]
                for t in runs.read_config(run_id)["augment_pipeline"]["transform"]["transforms"]]

    make_dataset("photos")
    make_dataset("characters", classes=(("7", (220, 40, 40)), ("L", (40, 40, 220))))
    assert transforms(prepare_run(TrainConfig(dataset="photos", strategy="finetune", **SMALL))) == [
        "RandomResizedCrop", "HorizontalFlip"]
    assert transforms(prepare_run(TrainConfig(dataset="characters", strategy="finetune", **SMALL))) == [
        "RandomResizedCrop"]


def test_a_run_trains_and_is_evaluated_on_the_version_it_was_prepared_on():
    from imgcls.store import journal, versions
    from imgcls.evaluate.evaluation import changes_since, evaluate

    make_dataset(per_class=8)
    before = versions.dataset_version("toy")
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    df = workspace.read_manifest("toy")
    val = df.loc[(df["split"] == "val") & (df["label"] == "red"), "path"].iloc[0]
    trained = df[df["split"].isin(["train", "val"])]
    journal.edit("toy", "relabel", [val], "blue")  # edits between Start and the run's first step
    journal.edit("toy", "exclude", [trained["path"].iloc[0]])
    run(run_id, echo=lambda _: None)
    config = runs.read_config(run_id)
    assert config["dataset_version"] == before
    seen = [m for m in runs.read_metrics(run_id) if m["kind"] == "features"][0]
    assert seen["images"] == len(trained)
    metrics = evaluate(run_id, "val")  # evaluated after the edits: still the version it trained on
    assert metrics["dataset_version"] == before
    table = __import__("pandas").read_csv(metrics["predictions"], dtype={"label": str})
    assert table.set_index("path").at[val, "label"] == "red"
    notes = changes_since(table, workspace.read_manifest("toy")).set_axis(table["path"])
    assert notes[val] == "relabelled to blue since"


def _predictions(run_id):
    from imgcls.evaluate.evaluation import predict_split

    table = predict_split(run_id, "val").sort_values("hash")
    return table["hash"].tolist(), table[[c for c in table if c.startswith("p:")]].to_numpy()


def test_the_same_images_in_another_manifest_order_train_the_same_model():
    # the order of manifest rows used to decide the batches: a copy imported from the exported ZIP trained
    # another model from the same data and seed
    from imgcls.ingest import archive
    from imgcls.ingest.imports import import_zip

    make_dataset(per_class=10, spread=90)
    data = archive.export_dataset("toy")
    import_zip(data, "copy", label_csv=__import__("zipfile").ZipFile(io.BytesIO(data)).read("manifest.csv"))
    assert list(workspace.read_manifest("copy")["path"]) != list(workspace.read_manifest("toy")["path"])
    ours = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=4, **SMALL))
    theirs = prepare_run(TrainConfig(dataset="copy", strategy="linear", epochs=4, **SMALL))
    for run_id in (ours, theirs):
        run(run_id, echo=lambda _: None)
    losses = [[m["train_loss"] for m in runs.read_metrics(r) if m["kind"] == "epoch"] for r in (ours, theirs)]
    assert losses[0] == losses[1]
    (h1, p1), (h2, p2) = _predictions(ours), _predictions(theirs)
    assert h1 == h2 and np.array_equal(p1, p2)


def test_reproducible_seeds_fixes_threads_and_kernels_on_the_cpu_then_restores_them():
    from imgcls.train.loops import reproducible

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    drawn = []
    for _ in range(2):
        with reproducible(7, "cpu", threads=1):
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
            drawn.append((torch.rand(4), np.random.rand(4)))
    assert torch.equal(drawn[0][0], drawn[1][0]) and np.array_equal(drawn[0][1], drawn[1][1])
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    with reproducible(7, "cuda", threads=1):  # on a GPU the thread count is not the run's to change
        assert torch.get_num_threads() == before[0]


def test_a_run_records_its_thread_count_and_trains_with_it(monkeypatch):
    from imgcls.train import heads
    from imgcls.train.loops import default_threads

    make_dataset()
    assert runs.read_config(prepare_run(TrainConfig(dataset="toy", **SMALL)))["threads"] == default_threads()
    seen = []
    real = heads._train_head
    monkeypatch.setattr(heads, "_train_head", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    _train("linear", epochs=2, threads=1)
    assert seen == [1]


def test_finetune_twice_with_the_same_seed_gives_the_same_weights():
    make_dataset()
    states = []
    for _ in range(2):  # augmented batches, the network's top layers learning: the last epoch's weights
        run_id, _ = _train("finetune", epochs=1, head_epochs=2, augment="medium")
        states.append(torch.load(runs.run_dir(run_id) / "last.pt", weights_only=True)["model"])
    changed = [k for k, v in states[0].items() if v.is_floating_point()]
    assert changed and all(torch.equal(states[0][k], states[1][k]) for k in changed)


@pytest.mark.parametrize("strategy", ["linear", "finetune", "full", "scratch"])
def test_a_fresh_runs_config_reads_typed_and_writes_back_byte_for_byte(strategy, tmp_path):
    from imgcls.train.config import RunConfig

    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy=strategy, **SMALL))
    saved = runs.run_dir(run_id) / "config.json"
    d = json.loads(saved.read_text())
    config = RunConfig.read(run_id)
    assert config.to_dict() == d and not config.extra and "experiment" not in d
    workspace.atomic_write_json(tmp_path / "again.json", config.to_dict())
    assert (tmp_path / "again.json").read_bytes() == saved.read_bytes()
    assert config.strategy.name == strategy and config.classes == ("blue", "red")
    assert config.preprocess.weights == d["weights"] and config.preprocess.img_size == d["img_size"] == 64
    marked = dict(d, experiment={"tag": "t", "variant": "all images"})  # as the Learn page's runs carry
    assert RunConfig.from_dict(marked).to_dict() == marked


@pytest.mark.parametrize("name, keeps", [("finetune", True), ("full", False)])
def test_finetune_keeps_the_pretrained_batchnorm_statistics_while_its_top_layers_learn(name, keeps):
    """finetune normalises with ImageNet's statistics throughout (on the digits sample its first network epoch
    otherwise fell from the head's 0.97 training accuracy to 0.25); full lets the statistics follow the data."""
    from imgcls.train.config import RunConfig
    from imgcls.train.netfit import param_groups
    from imgcls.vision.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, pretrained=True)
    config = RunConfig(strategy_name=name, unfreeze=2, weight_decay=0.05, layer_decay=0.7)
    groups = param_groups(model, config)
    learning_bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                   and all(p.requires_grad for p in m.parameters())]
    assert learning_bn  # the top layers' BatchNorm layers learn their scale and shift
    before = [m.running_mean.clone() for m in learning_bn]
    x = torch.rand(8, 3, 64, 64) * 3  # far from ImageNet's statistics
    loader = [(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))]
    opt = torch.optim.AdamW(groups, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    train_one_epoch(model, loader, opt, sched, torch.nn.CrossEntropyLoss(), lambda xb: xb, should_stop=lambda: False,
                    batchnorm_stats=config.strategy.batchnorm_stats)
    moved = [not torch.equal(b, m.running_mean) for b, m in zip(before, learning_bn)]
    assert not any(moved) if keeps else all(moved)
    assert all(m.weight.grad is not None for m in learning_bn)  # learning all the same
