"""AppTest of the Train page: settings, real background runs on the shapes sample, stop, resume, errors."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.ingest import imports as data
from imgcls.train import runjobs
from imgcls.store import runs, workspace
from imgcls.charts import training as training_charts
from imgcls.jobs import procs
from imgcls.train.run import TrainConfig, prepare_run
from imgcls.ui.common import nav
from apphelpers import metric, png

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TRAIN = nav.TRAIN.path
TIMEOUT = 60  # the first run imports torch, timm and plotly
RUN_LIMIT_S = 150  # a linear run on shapes: ~5 s to start, ~20 s of features on 2 CPU cores


pytestmark = pytest.mark.usefixtures("app_home")


def shapes() -> None:
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")


def open_train() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(TRAIN).run()
    return at


def choose_long_finetune(at: AppTest) -> None:
    """Settings of a run that keeps going for minutes even on a fast GPU (no early stop)."""
    at.radio(key="train.strategy").set_value("finetune").run()
    at.number_input(key="train.epochs").set_value(100).run()
    at.number_input(key="train.patience").set_value(100).run()


def poll(at: AppTest, done, what: str, limit: float = RUN_LIMIT_S) -> AppTest:
    """Re-run the page (as the live view's timer would) until `done(at)` holds."""
    deadline = time.monotonic() + limit
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        latest = runs.read_status(runs.list_runs()[0]) if runs.list_runs() else "no run"
        assert time.monotonic() < deadline, f"gave up waiting for {what}; latest run: {latest}"
        time.sleep(1.0)


def the_run(task: str = "train") -> str:
    ids = [r for r in runs.list_runs() if runs.read_config(r).get("task", "train") == task]
    assert ids, f"no {task} run was created"
    return ids[0]


def state_of(run_id: str) -> str:
    return runs.read_status(run_id).get("state")


def test_renders_without_a_dataset():
    at = open_train()
    assert at.title[0].value == "Train"
    assert any("Data page" in i.value for i in at.info)
    assert not at.button  # nothing to start
    assert not at.exception


def test_renders_with_a_dataset_and_good_defaults():
    shapes()
    at = open_train()
    assert not at.error
    assert at.button(key="train.start").label == "Start training"
    assert at.button(key="train.find_lr").label == "Find a learning rate"
    assert at.selectbox(key="train.backbone").value == "efficientnet_lite0"
    assert "bundled" in at.selectbox(key="train.backbone").format_func("efficientnet_lite0")
    assert at.radio(key="train.strategy").value == "linear"
    assert at.number_input(key="train.epochs").value == 60
    assert any("light preset" in m.value for m in at.markdown)  # nothing saved on the Augment page yet
    header = " ".join(m.value for m in at.markdown)
    assert "350 train" in header and "75 validation" in header and "75 test" in header
    assert "CPU" in header or "GPU" in header
    # A new strategy brings its own defaults.
    at.radio(key="train.strategy").set_value("finetune").run()
    assert at.number_input(key="train.epochs").value == 6
    assert at.number_input(key="train.patience").value == 3
    assert not at.exception


def test_the_header_names_the_preset_without_its_mirror_for_digits():
    shapes()
    at = open_train()
    assert not any("without its mirror flip" in m.value for m in at.markdown)
    data.import_sample("digits", "digits")
    workspace.save_setting("active_dataset", "digits")
    at = open_train()
    assert any("light preset without its mirror flip" in m.value for m in at.markdown)
    assert not at.exception


def test_linear_run_from_the_page_trains_in_the_background():
    shapes()
    at = open_train()
    at.button(key="train.start").click().run()
    assert not at.error
    run_id = the_run()
    assert state_of(run_id) in runs.ACTIVE_STATES
    assert procs.alive(runs.read_status(run_id)["pid"])  # a process of its own, not the page
    cfg = runs.read_config(run_id)
    assert (cfg["strategy"], cfg["backbone"], cfg["augment"]) == ("linear", "efficientnet_lite0", "saved")
    poll(at, lambda a: state_of(run_id) == "done" and a.metric, "the linear run to finish")
    accuracy = metric(at, "Validation accuracy")
    assert accuracy.endswith("%") and float(accuracy[:-1]) > 60
    assert at.get("plotly_chart"), "no curves shown"
    assert any("Evaluate" in s.value for s in at.success)
    assert not [b for b in at.button if b.label == "Stop training"]
    table = at.dataframe[0].value
    assert list(table["run"]) == [run_id] and list(table["state"]) == ["done"]
    # A new session (a browser refresh) finds the run again.
    again = open_train()
    assert metric(again, "Validation accuracy") == accuracy
    assert not again.exception
    assert not at.exception


def test_one_class_dataset_is_a_plain_error_and_starts_nothing():
    data.import_files([(f"{i}.png", png((40 * i, 0, 0))) for i in range(6)], "reds", "red")
    workspace.save_setting("active_dataset", "reds")
    at = open_train()
    at.button(key="train.start").click().run()
    assert len(at.error) == 1
    assert "at least two classes" in at.error[0].value and "Traceback" not in at.error[0].value
    assert runs.list_runs() == []
    assert not at.exception


def start_long_finetune() -> tuple[AppTest, str]:
    """The Train page with a long finetune run of the shapes sample started from it and running."""
    shapes()
    at = open_train()
    choose_long_finetune(at)
    at.button(key="train.start").click().run()
    run_id = the_run()
    assert runs.read_config(run_id)["strategy"] == "finetune"
    poll(at, lambda a: state_of(run_id) == "running", "the finetune run to start", limit=60)
    return at, run_id


def test_stop_ends_a_running_finetune_run():
    at, run_id = start_long_finetune()
    pid = runs.read_status(run_id)["pid"]
    started = time.monotonic()
    at.button(key=f"train.stop.{run_id}").click().run()
    assert time.monotonic() - started < 10
    assert state_of(run_id) == "cancelled"
    assert not procs.alive(pid)
    assert any("Stopped by the user" in w.value for w in at.warning)
    assert not at.exception


def test_second_run_waits_in_the_queue_and_can_be_cancelled():
    at, first = start_long_finetune()
    time.sleep(1)  # distinct run ids (they carry the second)
    at.button(key="train.start").click().run()
    second = the_run()
    assert second != first
    poll(at, lambda a: any("number 1 in the queue" in i.value for i in a.info), "the queue notice", limit=60)
    at.button(key=f"train.stop.{second}").click().run()
    assert state_of(second) == "cancelled"
    assert state_of(first) == "running"
    runjobs.stop(first)
    assert not at.exception


def test_interrupted_run_can_be_resumed():
    shapes()
    run_id = prepare_run(TrainConfig("shapes", epochs=2))
    runs.write_status(run_id, state="running", pid=2**22 + 12345)  # a process that is gone
    at = open_train()
    assert runs.read_status(run_id)["state"] == "interrupted"
    assert any("stopped unexpectedly" in w.value for w in at.warning)
    at.button(key=f"train.resume.{run_id}").click().run()
    status = runs.read_status(run_id)
    assert status["state"] in runs.ACTIVE_STATES and procs.alive(status["pid"])
    assert not [b for b in at.button if b.key == f"train.resume.{run_id}"]
    runjobs.stop(run_id)
    assert not at.exception


def test_learning_rate_finder_suggests_a_rate_to_use():
    shapes()
    at = open_train()
    at.button(key="train.find_lr").click().run()
    lr_run = the_run("lr_find")
    poll(at, lambda a: state_of(lr_run) in runs.FINAL_STATES and a.get("plotly_chart"), "the learning-rate search")
    assert state_of(lr_run) == "done"
    found = workspace.read_json(runs.run_dir(lr_run) / "lr_find.json")
    use = at.button(key=f"train.use_lr.{lr_run}")
    assert use.label == f"Use {found['suggestion']:.2e}"
    use.click().run()
    assert at.radio(key="train.lr_mode").value == "custom"
    assert float(at.text_input(key="train.lr_value").value) == pytest.approx(found["suggestion"], rel=1e-2)
    assert not at.exception


def test_compare_helpers_show_differences_and_curves():
    records = [{"kind": "epoch", "stage": "head", "epoch": e, "train_loss": 1 / e, "train_accuracy": e / 4,
                "val_loss": 1 / e, "val_accuracy": e / 5, "lr": 1e-3} for e in (1, 2, 3)]
    records += [{"kind": "epoch", "stage": "finetune", "epoch": 1, "train_loss": 0.2, "train_accuracy": 0.9,
                 "val_loss": 0.3, "val_accuracy": 0.8, "lr": 1e-4}]
    records += [dict(records[-1], val_accuracy=0.85)]  # a resumed run repeats an epoch: the last one wins
    frame = training_charts.epoch_frame(records)
    assert list(frame["x"]) == [1, 2, 3, 4] and frame["val_accuracy"].iloc[-1] == 0.85
    fig = training_charts.compare_val_accuracy({"a": records, "b": records[:2]})
    assert [len(t.x) for t in fig.data] == [4, 2]
    diff = training_charts.config_diff({"strategy": "linear", "lr": 0.003, "seed": 0},
                                       {"strategy": "finetune", "lr": 0.001, "seed": 0})
    assert list(diff["setting"]) == ["strategy", "lr"]


def test_the_header_says_linear_leaves_augmentation_unused_only_while_linear_is_chosen():
    shapes()
    at = open_train()
    unused = "Not used by `linear`"
    assert at.radio(key="train.strategy").value == "linear"
    assert any(unused in m.value for m in at.markdown)
    at.radio(key="train.strategy").set_value("finetune").run()
    assert not any(unused in m.value for m in at.markdown)
    assert any("**Augmentation:** the light preset" in m.value for m in at.markdown)
    at.radio(key="train.strategy").set_value("linear").run()
    assert any(unused in m.value for m in at.markdown)
    assert not at.exception


def test_header_names_the_pipeline_saved_on_the_augment_page():
    from imgcls.augment import spec as augspec
    from imgcls.augment.pipeline import save_pipeline

    shapes()
    save_pipeline("shapes", augspec.build([{"name": "VerticalFlip"}], img_size=256))
    at = open_train()
    assert any("saved pipeline, 1 transform (VerticalFlip)" in m.value for m in at.markdown)
    assert not at.exception


def test_a_stopped_run_shows_its_name_and_kept_accuracy_and_is_renamed_from_the_page():
    from imgcls.train.run import run
    from imgcls.ui.common.text import plain
    from test_runs import stopped_finetune
    from test_train import SMALL, make_dataset

    make_dataset(per_class=12)
    workspace.save_setting("active_dataset", "toy")
    stopped = stopped_finetune()
    at = open_train()
    kept = runs.read_status(stopped)["result"]
    table = next(d.value for d in at.dataframe if "best val accuracy" in d.value.columns).set_index("run")
    assert table.at[stopped, "name"] == "toy finetune 1"
    assert table.at[stopped, "state"] == "stopped early (cancelled)"
    assert table.at[stopped, "best val accuracy"] == pytest.approx(100 * kept["val_accuracy"])  # not "–"
    assert any(c.value.startswith("Stopped early by the user") for c in at.caption)
    assert [p.proto.label for p in at.get("page_link") if "kept" in p.proto.label] == ["Evaluate the model kept"]
    assert any(m.value == "**toy finetune 1**" for m in at.markdown)  # one run: its name, no picker

    typed = "_mine_ <b>run</b> #1"
    at.text_input(key=f"train.rename.{stopped}").input(typed)
    at.button(key=f"train.rename.{stopped}.save").click().run()
    assert runs.read_config(stopped)["name"] == typed
    assert any(m.value == f"**{plain(typed)}**" for m in at.markdown)
    table = next(d.value for d in at.dataframe if "best val accuracy" in d.value.columns)
    assert list(table["name"]) == [typed]

    linear = prepare_run(TrainConfig("toy", epochs=3, **SMALL))
    run(linear, echo=lambda _: None)
    at = open_train()
    picker = at.selectbox(key="train.picker")
    assert picker.value == linear and picker.options == [
        f"toy linear 1 · linear · {runs.read_status(linear)['result']['val_accuracy']:.1%}",
        f"{typed} · finetune · {kept['val_accuracy']:.1%} · stopped early"]
    assert not at.exception


def test_run_names_in_the_comparison_chart_are_text_not_markup():
    records = [{"kind": "epoch", "stage": "head", "epoch": 1, "val_loss": 0.5, "val_accuracy": 0.5}]
    fig = training_charts.compare_val_accuracy({"<b>bold</b> %{y} & co": records})
    assert fig.data[0].name == "&lt;b&gt;bold&lt;/b&gt; %{y} &amp; co"
    assert "bold" not in fig.data[0].hovertemplate  # the name is not read as a template
    row = training_charts.run_row("an-id", {"name": "mine", "strategy": "linear"},
                                  {"state": "interrupted", "result": {"val_accuracy": 0.8, "stopped_early": True}})
    assert (row["name"], row["run"], row["state"], row["best val accuracy"]) == \
        ("mine", "an-id", "stopped early (interrupted)", 0.8)
