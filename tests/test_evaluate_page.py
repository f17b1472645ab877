"""AppTest of the Evaluate page on a tiny trained run: metrics, confusion cells, predictions, export."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from imgcls.charts import evaluation as eval_charts
from imgcls.store import runs, workspace
from imgcls.train.run import TrainConfig, prepare_run, run
from imgcls.ui.common import nav

from test_train import SMALL, _png, make_dataset
from apphelpers import metric, png

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120  # the first run imports torch and evaluates the split

pytestmark = pytest.mark.usefixtures("app_home")


# Two classes of nearly the same colour: the model mixes them up, so the matrix has mistakes to open.
CONFUSABLE = (("red", (220, 40, 40)), ("rose", (215, 45, 45)), ("blue", (40, 40, 220)))


def trained_run(classes=None, per_class=10, **settings) -> str:
    name = make_dataset(per_class=per_class, **({"classes": classes} if classes else {}))
    workspace.save_setting("active_dataset", name)
    return train_again(name, **settings)


def train_again(name: str = "toy", **settings) -> str:
    run_id = prepare_run(TrainConfig(dataset=name, strategy="linear", **{"epochs": 5, **SMALL, **settings}))
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
        assert mistakes[0] == f"really {top['label']} → {top['prediction']} · {top['confidence']:.1%}"
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
    download = wait_for_export(at)
    assert download and download[0].proto.label == "Download the ZIP"
    assert not again.exception
    assert not at.exception


def wait_for_export(at, limit: float = 240):
    """Rerun the page (as the export's live view does every second) until the ZIP is offered."""
    import time

    deadline = time.monotonic() + limit
    while not [b for b in at.get("download_button") if b.proto.label == "Download the ZIP"]:
        assert time.monotonic() < deadline, "the export job did not finish"
        assert not at.error, [e.value for e in at.error]
        time.sleep(0.5)
        at.run()
    return at.get("download_button")


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


def test_two_uploads_of_the_same_name_each_show_their_own_picture(monkeypatch):
    from imgcls.evaluate.predict import Predictor

    trained_run()
    red, blue = _png((220, 40, 40), 999), _png((40, 40, 220), 998)
    explained = []
    real = Predictor.explain
    monkeypatch.setattr(Predictor, "explain", lambda self, data, *a: explained.append(data) or real(self, data, *a))
    at = open_evaluate()
    at.toggle(key="evaluate.gradcam").set_value(True).run()  # the picture drawn is the Grad-CAM of each file
    at.file_uploader(key="evaluate.upload").set_value(
        [("photo.png", red, "image/png"), ("photo.png", blue, "image/png")]).run()
    assert [m.value.split(" (")[0] for m in at.markdown if m.value.startswith("**photo.png**")] == \
        ["**photo.png**: red", "**photo.png**: blue"]
    assert explained[-2:] == [red, blue]  # each row's own bytes, not the last file of that name
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
    from imgcls.share import demo

    run_id = trained_run()
    at = open_evaluate()
    at.toggle(key="evaluate.gradcam").set_value(True).run()
    at.file_uploader(key="evaluate.upload").upload("red.png", png((220, 40, 40)), "image/png").run()
    assert any("**red.png**" in m.value for m in at.markdown)  # the prediction, drawn beside its Grad-CAM
    assert not at.exception
    at.selectbox(key=f"demo.expiry.{run_id}").set_value("7 days").run()
    at.button(key=f"demo.publish.{run_id}").click().run()
    assert demo.is_published(run_id) and demo.expiry_of(run_id)
    links = [c.value for c in at.code if "?demo=" in c.value]
    assert links == [f"{base}/?demo={demo.token_of(run_id)}" for base in [links[0].split("/?")[0]]]
    assert run_id not in links[0] and links[0].startswith("http://")
    assert any("demo server" in w.value for w in at.warning)  # without sign-in: the demo-only server serves it
    at.text_input(key="demo.base_url").set_value("http://photos.lan:8502").run()
    at.button(key="demo.base_url.save").click().run()
    assert f"http://photos.lan:8502/?demo={demo.token_of(run_id)}" in [c.value for c in at.code]
    at.button(key=f"demo.unpublish.{run_id}").click().run()
    assert not demo.is_published(run_id)
    assert not at.exception


# --- fixing labels from the mistakes, TTA, ROC, comparison, batches, unfamiliar images -------------------


def _saved_table(run_id: str, suffix: str = "val") -> pd.DataFrame:
    saved = workspace.read_json(runs.run_dir(run_id) / f"evaluation-{suffix}.json")
    table = pd.read_csv(saved["predictions"], keep_default_na=False)
    return table.assign(correct=table["correct"].astype(str).str.lower() == "true")


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The shown table with this column (AppTest does not expose a dataframe's key)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a '{column}' column"
    return found[0]


def _label_of(path: str) -> tuple[str, bool]:
    df = workspace.read_manifest("toy").set_index("path")
    return str(df.at[path, "label"]), bool(df.at[path, "excluded"])


def test_fixing_a_mistake_relabels_it_in_the_journal_and_undo_restores_it(monkeypatch):
    from imgcls.store import journal

    run_id = trained_run(CONFUSABLE)
    at = open_evaluate()
    worst = eval_charts.worst_mistakes(_saved_table(run_id))
    assert len(worst) >= 2, "the confusable classes should give mistakes to fix"
    first, second = worst.iloc[0], worst.iloc[1]
    at.button(key=f"evaluate.fix.worst.{first['path']}.as_predicted").click().run()
    assert _label_of(first["path"]) == (first["prediction"], False)
    entry = journal.history("toy")[-1]
    assert entry["source"] == "evaluate" and entry["action"] == "relabel" and entry["value"] == first["prediction"]
    assert at.success[0].value.startswith("Relabelled 1 image")
    assert any(c.value.endswith(f"relabelled to {first['prediction']} since") for c in at.caption)
    journal.edit("toy", "exclude", [second["path"]])  # another tab edits after the Undo button was drawn
    at.button(key="evaluate.fix.undo.worst").click().run()
    assert "Another edit was made meanwhile" in at.error[0].value  # refused: it would undo the other edit
    assert _label_of(first["path"]) == (first["prediction"], False) and _label_of(second["path"])[1]
    journal.undo("toy")
    at.run()
    at.button(key="evaluate.fix.undo.worst").click().run()
    assert _label_of(first["path"]) == (first["label"], False)
    assert at.success[0].value.startswith("Undid the edit on 1 image")
    other = [c for c, _ in CONFUSABLE if c not in (second["label"], second["prediction"])][0]
    at.selectbox(key=f"evaluate.fix.worst.{second['path']}.class").set_value(other)
    at.button(key=f"evaluate.fix.worst.{second['path']}.relabel").click().run()
    assert _label_of(second["path"]) == (other, False)
    at.button(key=f"evaluate.fix.worst.{first['path']}.exclude").click().run()
    assert _label_of(first["path"]) == (first["label"], True)
    assert any(c.value.endswith("excluded since") for c in at.caption)
    assert journal.history("toy")[-1]["source"] == "evaluate"
    at.button(key=f"evaluate.fix.worst.{first['path']}.restore").click().run()  # excluded: offers a restore
    assert _label_of(first["path"]) == (first["label"], False)
    refused = journal.EditRefused("A class needs a name: the new label is empty.")
    with monkeypatch.context() as patch:  # a refused edit is a plain message, not a crash
        patch.setattr(journal, "edit", lambda *a, **k: (_ for _ in ()).throw(refused))
        at.button(key=f"evaluate.fix.worst.{first['path']}.as_predicted").click().run()
    assert at.error[0].value == str(refused) and _label_of(first["path"]) == (first["label"], False)
    saved = workspace.read_json(runs.run_dir(run_id) / "evaluation-val.json")
    assert metric(at, "Accuracy") == f"{saved['accuracy']:.1%}"  # unchanged until evaluated again
    at.toggle(key="evaluate.looked").set_value(True).run()  # Grad-CAM overlays in place of the thumbnails
    assert len([c for img in at.image for c in img.captions if "→" in c]) == len(worst)
    assert not at.exception


def test_tta_is_saved_apart_and_the_roc_curves_are_drawn():
    run_id = trained_run(CONFUSABLE)
    at = open_evaluate()
    plain = runs.run_dir(run_id) / "evaluation-val.json"
    stamp = plain.stat().st_mtime_ns
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert sum("AUC" in spec for spec in charts) == 1 and all(f"{c} (AUC" in "".join(charts) for c, _ in CONFUSABLE)
    assert any("without TTA" in c.value for c in at.caption)
    at.checkbox(key="evaluate.tta").check().run()
    tta = workspace.read_json(runs.run_dir(run_id) / "evaluation-val-tta.json")
    assert tta["tta"] is True and plain.stat().st_mtime_ns == stamp  # the result without TTA is kept
    assert metric(at, "Accuracy") == f"{tta['accuracy']:.1%}"
    assert any("with TTA" in c.value for c in at.caption)
    at.checkbox(key="evaluate.tta").uncheck().run()
    assert metric(at, "Accuracy") == f"{workspace.read_json(plain)['accuracy']:.1%}"
    assert not at.exception


def test_a_second_run_side_by_side():
    first = trained_run()
    second = train_again(epochs=2, seed=1)
    at = open_evaluate()
    at.selectbox(key="evaluate.run").set_value(first).run()
    assert at.selectbox(key="evaluate.second").value is None
    at.selectbox(key="evaluate.second").set_value(second).run()
    table = _frame(at, "difference")
    a, b = (workspace.read_json(runs.run_dir(r) / "evaluation-val.json") for r in (first, second))
    acc = table.set_index("metric").loc["Accuracy"]
    assert acc["first"] == pytest.approx(a["accuracy"])
    assert acc["difference"] == pytest.approx(b["accuracy"] - a["accuracy"])
    assert {"F1 of red", "F1 of blue", "Calibration error (ECE)"} <= set(table["metric"])
    settings = _frame(at, "setting")
    assert {"epochs", "seed"} <= set(settings["setting"])
    assert not at.exception


def test_a_batch_from_a_zip_lists_the_broken_file_and_offers_a_csv():
    from conftest import make_zip
    from test_ood import stripes_png

    trained_run(per_class=20)
    at = open_evaluate()
    archive = make_zip([("photos/red1.png", _png((220, 40, 40), 999)), ("photos/blue1.png", _png((40, 40, 220), 998)),
                        ("photos/broken.png", b"not an image at all"), ("photos/notes.txt", b"hello"),
                        ("photos/stripes.png", stripes_png())])
    at.file_uploader(key="evaluate.batch_upload").upload("batch.zip", archive, "application/zip").run()
    table = _frame(at, "unfamiliar").set_index("file")
    assert table.at["batch.zip/photos/red1.png", "prediction"] == "red"
    assert table.at["batch.zip/photos/blue1.png", "prediction"] == "blue"
    assert "corrupt" in table.at["batch.zip/photos/broken.png", "error"]
    assert "not an image" in table.at["batch.zip/photos/notes.txt", "error"]
    assert bool(table.at["batch.zip/photos/stripes.png", "unfamiliar"])
    assert not table.at["batch.zip/photos/red1.png", "unfamiliar"]
    assert "broken.png" in at.error[0].value and "notes.txt" in at.error[0].value
    download = at.get("download_button")
    assert download and download[0].proto.label == "Download the predictions (CSV)"
    assert not at.exception


def test_an_image_unlike_the_training_images_gets_a_plain_warning():
    from imgcls.evaluate.predict import UNFAMILIAR
    from test_ood import noise_png

    trained_run(per_class=20)
    at = open_evaluate()
    at.file_uploader(key="evaluate.upload").set_value(
        [("red.png", _png((220, 40, 40), 999), "image/png"), ("noise.png", noise_png(), "image/png")]).run()
    assert [w.value for w in at.warning] == [UNFAMILIAR]
    assert any(m.value.startswith("**noise.png**") for m in at.markdown)
    assert not at.exception


def test_leaked_validation_images_are_named_with_the_fairer_accuracy():
    run_id = trained_run()
    at = open_evaluate()
    table = pd.read_csv(runs.run_dir(run_id) / "predictions-val.csv", dtype={"path": str}, keep_default_na=False)
    leaked = list(table["path"][:2])
    # a saved health report whose leakage finding names two of the validation images (and their train twins)
    workspace.atomic_write_json(workspace.dataset_dir("toy") / "health.json", {
        "dataset": "toy", "score": 80, "findings": [
            {"kind": "leakage", "severity": "high", "title": "Copies across splits", "message": "",
             "images": leaked + ["images/not-in-val.png"], "scores": [1, 1, 1], "suggested": {}, "groups": [],
             "details": {}}], "images": {}})
    at.run()
    correct = table["correct"].astype(str).str.lower().isin(["true", "1"])
    without = correct[~table["path"].isin(leaked)].mean()
    text = " ".join(w.value for w in at.warning)
    assert f"2 of these {len(table)} images have a copy" in text
    assert f"{correct.mean():.1%} with them and {without:.1%} without them" in text
    [code] = [c.value for c in at.code if "evaluate(run_id" in c.value]
    assert f"run_id = {run_id!r}" in code
    compile(code, "evaluate", "exec")
    assert not at.exception


# --- a run stopped early, and run names ----------------------------------------------------------------


def test_a_stopped_run_is_evaluated_compared_exported_and_published_marked_as_stopped_early():
    from imgcls.share import demo
    from test_runs import stopped_finetune

    name = make_dataset(per_class=12)
    workspace.save_setting("active_dataset", name)
    stopped = stopped_finetune(name)
    finished = train_again(name)
    at = open_evaluate()
    picker = at.selectbox(key="evaluate.run")
    assert picker.value == finished  # the newest of the active dataset comes first
    kept = runs.read_status(stopped)["result"]
    done = runs.read_status(finished)["result"]
    assert picker.options == [f"toy linear 1 · toy · linear · {done['val_accuracy']:.1%}",
                              f"toy finetune 1 · toy · finetune · {kept['val_accuracy']:.1%} · stopped early"]
    assert not at.warning  # a finished run has no stopped-early note

    picker.set_value(stopped).run()
    assert any("Stopped early by the user" in w.value and f"{kept['val_accuracy']:.1%}" in w.value for w in at.warning)
    saved = workspace.read_json(runs.run_dir(stopped) / "evaluation-val.json")
    assert metric(at, "Accuracy") == f"{saved['accuracy']:.1%}"
    assert any(stopped in c.value for c in at.caption)  # the id, for the command line
    at.selectbox(key="evaluate.second").set_value(finished).run()  # the compare tab offers the finished run
    assert "difference" in _frame(at, "difference").columns
    assert any("First: toy finetune 1 \\(stopped early\\); second: toy linear 1" in c.value for c in at.caption)
    at.button(key="evaluate.export").click().run()
    assert wait_for_export(at) and any("says it was stopped early" in c.value for c in at.caption)
    at.button(key=f"demo.publish.{stopped}").click().run()
    assert demo.is_published(stopped)
    assert not at.exception


def test_a_run_is_renamed_from_the_evaluate_page_and_shown_markdown_safe():
    from imgcls.ui.common.text import plain

    first = trained_run()
    second = train_again(epochs=2)
    at = open_evaluate()
    assert at.selectbox(key="evaluate.run").value == second
    typed = "**big** [link](http://example.com) :red[x]"
    at.text_input(key=f"evaluate.rename.{second}").input(typed)
    at.button(key=f"evaluate.rename.{second}.save").click().run()
    assert runs.read_config(second)["name"] == typed and not at.error
    assert at.selectbox(key="evaluate.run").options[0].startswith(f"{typed} · toy · linear")  # a picker: plain text
    at.selectbox(key="evaluate.second").set_value(first).run()
    settings = [m.value for m in at.markdown if m.value.startswith("**Settings that differ**")]
    assert settings == [f"**Settings that differ** between {plain(typed)} (first) and toy linear 1 (second):"]
    # a name in use is refused with the reason, and nothing changes
    at.text_input(key=f"evaluate.rename.{second}").input("Toy Linear 1")
    at.button(key=f"evaluate.rename.{second}.save").click().run()
    assert "already called" in at.error[0].value and runs.read_config(second)["name"] == typed
    assert not at.exception
