"""AppTest of what keeps the Evaluate and Train pages quick and clear: Grad-CAM for the images shown in one
batch with a colour legend, an upload predicted once, one percent format, an export built once, the Train
header on one line, and a job that says it is loading rather than waiting."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.charts import evaluation as eval_charts
from imgcls.store import runs, workspace
from imgcls.evaluate.predict import Predictor
from imgcls.ui.common import nav
from imgcls.ui.evaluate.predict import LEGEND_ENDS

from test_evaluate_page import APP, CONFUSABLE, TIMEOUT, open_evaluate, trained_run
from test_train import _png

pytestmark = pytest.mark.usefixtures("app_home")


def test_grad_cam_overlays_come_in_one_batch_with_a_legend(monkeypatch):
    run_id = trained_run(CONFUSABLE)
    batches = []
    real = Predictor.explain_prepared
    monkeypatch.setattr(Predictor, "explain_prepared", lambda self, images, *a, **k: batches.append(len(images))
                        or real(self, images, *a, **k))
    at = open_evaluate()
    assert not [i for i in at.image if LEGEND_ENDS in i.captions]  # no legend without overlays
    at.toggle(key="evaluate.looked").set_value(True).run()
    shown = [img for img in at.image if any(" · " in c for c in img.captions)]
    cached = list((workspace.cache_dir("gradcam")).rglob("*.jpg"))
    # every image on screen, in the cell's grid and the mistakes' (which share some), in one pass
    assert len(batches) == 1 and batches[0] == len(cached) > 1 and len(shown) >= len(cached)
    assert all(p.parent.name.startswith(run_id) for p in cached)
    legend = [img for img in at.image if LEGEND_ENDS in img.captions]
    assert len(legend) == 1 and any("Blue where nothing pushed the model" in c.value for c in at.caption)
    at.run()  # a rerun (a click elsewhere) reads the overlays from the cache
    assert len(batches) == 1
    assert not at.exception


def test_an_upload_is_predicted_once_and_the_grad_cam_legend_shows(monkeypatch):
    trained_run()
    calls = []
    real = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, files, *a, **k: calls.append(len(list(files)))
                        or real(self, files, *a, **k))
    at = open_evaluate()
    red, blue = ("red.png", _png((220, 40, 40), 999), "image/png"), ("blue.png", _png((40, 40, 220), 998), "image/png")
    at.file_uploader(key="evaluate.upload").set_value([red]).run()
    at.file_uploader(key="evaluate.upload").set_value([red, blue]).run()
    at.slider(key="evaluate.not_sure").set_value(0.9).run()  # a new threshold: answers re-read, not re-predicted
    assert calls == [1, 1]  # the first image once, then only the new one
    answers = [m.value for m in at.markdown if m.value.startswith(("**red.png**", "**blue.png**"))]
    assert len(answers) == 2 and all(a.endswith("%)") and "." in a.split("(")[-1] for a in answers)  # 97.3%
    at.toggle(key="evaluate.gradcam").set_value(True).run()
    assert any(LEGEND_ENDS in img.captions for img in at.image)
    assert not at.exception


def test_percentages_have_one_format_on_the_page():
    run_id = trained_run(CONFUSABLE)
    at = open_evaluate()
    saved = workspace.read_json(runs.run_dir(run_id) / "evaluation-val.json")
    table = at.dataframe[0]
    assert list(table.value["precision"]) == pytest.approx([100 * saved["per_class"][c]["precision"]
                                                            for c in saved["classes"]])
    config = json.loads(table.proto.columns)
    assert {config[c]["type_config"]["format"] for c in ("precision", "recall")} == {eval_charts.PERCENT_COLUMN}
    assert eval_charts.percent(0.8) == "80.0%" and eval_charts.percent(0.81818) == "81.8%"
    captions = [c for img in at.image for c in img.captions if " · " in c]
    assert captions and all(c.endswith("%") and c.split(" · ")[-1][-3] == "." for c in captions)
    assert not at.exception


def test_the_export_is_built_once_per_model():
    from imgcls.evaluate import exportjob

    from test_evaluate_page import wait_for_export

    run_id = trained_run()
    at = open_evaluate()
    at.button(key="evaluate.export").click().run()  # a background job builds it
    assert wait_for_export(at)
    finished, stamp = exportjob.status(run_id)["finished"], exportjob.ready(run_id).stat().st_mtime_ns
    again = open_evaluate()  # another visit, or another tab: the ZIP is offered at once, not built again
    assert [b for b in again.get("download_button") if b.proto.label == "Download the ZIP"]
    assert not [b for b in again.button if b.key == "evaluate.export"]
    assert exportjob.status(run_id)["finished"] == finished and exportjob.ready(run_id).stat().st_mtime_ns == stamp
    assert not at.exception and not again.exception


def test_the_train_header_lines_up_and_a_starting_job_shows_as_running():
    import subprocess

    from imgcls.jobs import STARTING
    from imgcls.train.run import TrainConfig, prepare_run

    from test_train import SMALL, make_dataset

    workspace.save_setting("active_dataset", make_dataset(per_class=6))
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=2, **SMALL))
    # as the job writes it once it holds the device, before torch loads; a sleeping process stands in for it
    # (Stop, and the fixture's clean-up, signal that pid)
    stand_in = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        runs.write_status(run_id, state="running", message=STARTING, pid=stand_in.pid)
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        at.switch_page(nav.TRAIN.path).run()
    finally:
        stand_in.kill()
        stand_in.wait()
    header = [c for c in at.columns if any(m.value.startswith("**Dataset:**") for m in c.markdown)]
    siblings = [c for c in at.columns if any(m.value.startswith(("**Augmentation:**", "**Device:**"))
                                             for m in c.markdown)]
    # top-aligned: the three bold headings share one line however tall each column is
    assert len(header) == 1 and len(siblings) == 2
    assert {c.proto.vertical_alignment for c in header + siblings} == {0}  # Block.Column.TOP
    texts = [p.proto.text for p in at.get("progress")]
    assert any(STARTING in t for t in texts)
    assert not any(w in t for t in texts for w in ("Waiting to start", "Starting the training process"))
    assert at.button(key=f"train.stop.{run_id}")  # a running job: Stop, not Cancel
    assert not at.exception
