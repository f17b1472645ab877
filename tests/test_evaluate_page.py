"""AppTest of the Evaluate page on a tiny trained run: metrics, confusion cells, predictions, export."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from imgcls import eval_charts, runs, workspace
from imgcls.train import TrainConfig, prepare_run, run
from imgcls.ui import nav

from test_train import SMALL, make_dataset
from apphelpers import metric, png

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120  # the first run imports torch and evaluates the split

pytestmark = pytest.mark.usefixtures("app_home")


# Two classes of nearly the same colour: the model mixes them up, so the matrix has mistakes to open.
CONFUSABLE = (("red", (220, 40, 40)), ("rose", (215, 45, 45)), ("blue", (40, 40, 220)))


def trained_run(classes=None) -> str:
    name = make_dataset(per_class=10, **({"classes": classes} if classes else {}))
    workspace.save_setting("active_dataset", name)
    run_id = prepare_run(TrainConfig(dataset=name, strategy="linear", epochs=5, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def open_evaluate() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(nav.EVALUATE.path).run()
    return at


def test_without_a_run_the_page_says_what_to_do():
    at = open_evaluate()
    assert at.title[0].value == "Evaluate"
    assert any("Train page" in i.value for i in at.info)
    assert not at.exception


def test_trained_run_shows_metrics_and_saves_the_evaluation():
    run_id = trained_run()
    at = open_evaluate()
    assert not at.error
    assert at.selectbox(key="evaluate.run").value == run_id
    saved = workspace.read_json(runs.run_dir(run_id) / "evaluation-val.json")
    assert metric(at, "Accuracy") == f"{saved['accuracy']:.1%}"
    assert metric(at, "Macro F1") == f"{saved['macro_f1']:.3f}"
    assert {"Balanced accuracy", "Calibration error (ECE)"} <= {m.label for m in at.metric}
    table = at.dataframe[0].value
    assert list(table["class"]) == saved["classes"]
    assert len(at.get("plotly_chart")) >= 2  # confusion matrix and reliability diagram
    assert not at.exception


def test_a_confusion_cell_lists_exactly_its_images():
    run_id = trained_run(CONFUSABLE)
    at = open_evaluate()
    saved = workspace.read_json(runs.run_dir(run_id) / "evaluation-val.json")
    table = pd.read_csv(saved["predictions"])
    classes = saved["classes"]
    key = f"evaluate.cell.{run_id}.val"
    cells = eval_charts.cell_options(saved)
    assert len(at.selectbox(key=key).options) == len(cells) > 3  # every non-empty cell, mistakes too
    for cell in cells:
        at.selectbox(key=key).set_value(cell).run()
        i, j = (int(v) for v in cell.split(","))
        label = f"Show images predicted as {classes[j]} that are really {classes[i]}"
        assert at.selectbox(key=key).options[cells.index(cell)] == label
        want = table[(table["label"] == classes[i]) & (table["prediction"] == classes[j])]
        captions = [c for img in at.image for c in img.captions if "·" in c and "→" not in c]
        assert sorted(c.split(" · ")[0] for c in captions) == sorted(Path(s).name for s in want["source"])
    wrong = table[table["label"] != table["prediction"]]
    mistakes = [c for img in at.image for c in img.captions if "→" in c]
    assert len(mistakes) == min(len(wrong), 12)
    if len(wrong):
        top = wrong.sort_values("confidence").iloc[-1]
        assert mistakes[0] == f"really {top['label']} → {top['prediction']} · {top['confidence']:.0%}"
    assert not at.exception


def test_test_split_export_and_a_second_visit_reuse_the_saved_evaluation():
    run_id = trained_run()
    at = open_evaluate()
    at.radio(key="evaluate.split").set_value("test").run()
    saved = runs.run_dir(run_id) / "evaluation-test.json"
    assert saved.exists() and metric(at, "Accuracy") == f"{workspace.read_json(saved)['accuracy']:.1%}"
    stamp = saved.stat().st_mtime_ns
    again = open_evaluate()
    again.radio(key="evaluate.split").set_value("test").run()
    assert saved.stat().st_mtime_ns == stamp  # read from the run folder, not predicted again
    again.button(key="evaluate.recompute").click().run()
    assert saved.stat().st_mtime_ns != stamp
    at.button(key="evaluate.export").click().run()
    download = at.get("download_button")
    assert download and download[0].proto.label == "Download the ZIP"
    assert not again.exception
    assert not at.exception


def test_prediction_upload_shows_a_result_and_names_a_broken_file():
    trained_run()
    at = open_evaluate()
    at.file_uploader(key="evaluate.upload").set_value(
        [("good.png", png((220, 40, 40)), "image/png"), ("broken.png", b"not an image", "image/png")]).run()
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert any(m.value.startswith("**good.png**: red") for m in at.markdown)
    at.slider(key="evaluate.not_sure").set_value(1.0).run()  # nothing is that sure
    assert any(m.value.startswith("**good.png**: not sure") for m in at.markdown)
    assert len(at.error) == 1
    assert not at.exception


def test_chart_helpers():
    result = {"classes": ["a", "b", "c"], "confusion": [[5, 2, 0], [0, 4, 1], [0, 0, 3]],
              "confusion_normalised": [[5 / 7, 2 / 7, 0], [0, 0.8, 0.2], [0, 0, 1]],
              "reliability": [{"low": 0.5, "high": 0.6, "count": 3, "accuracy": 0.4, "confidence": 0.55}]}
    assert eval_charts.cell_options(result) == ["0,1", "1,2", "0,0", "1,1", "2,2"]  # mistakes first, biggest first
    fig = eval_charts.confusion_figure(result)
    clickable = fig.data[1]  # plotly reports no clicks on heatmaps: one invisible marker per cell takes them
    assert len(clickable.x) == 9 and (clickable.x[1], clickable.y[1]) == ("b", "a")
    assert list(fig.data[0].text[0]) == ["5", "2", "0"]
    table = pd.DataFrame({"path": ["x", "y", "z"], "label": ["a", "a", "b"], "prediction": ["b", "a", "a"],
                          "confidence": [0.6, 0.9, 0.8], "correct": [False, True, False]})
    assert list(eval_charts.worst_mistakes(table)["path"]) == ["z", "x"]
    assert list(eval_charts.cell_rows(table, "a", "b")["path"]) == ["x"]
    assert len(eval_charts.reliability_figure(result).data) == 3
    assert list(eval_charts.top_k_figure([("a", 0.7), ("b", 0.2)]).data[0].y) == ["a", "b"]


def test_grad_cam_and_demo_publishing_from_the_page():
    from imgcls import demo

    run_id = trained_run()
    at = open_evaluate()
    at.toggle(key="evaluate.gradcam").set_value(True).run()
    at.file_uploader(key="evaluate.upload").upload("red.png", png((220, 40, 40)), "image/png").run()
    assert any("**red.png**" in m.value for m in at.markdown)  # the prediction, drawn beside its Grad-CAM
    assert not at.exception
    at.button(key=f"demo.publish.{run_id}").click().run()
    assert demo.is_published(run_id)
    assert any(f"/demo?run={run_id}" in c.value for c in at.code)
    at.button(key=f"demo.unpublish.{run_id}").click().run()
    assert not demo.is_published(run_id)
    assert not at.exception
