"""Teaching panels: "Show the code" with the imgcls calls behind a page, and concept cards."""

from __future__ import annotations

import dataclasses

import streamlit as st

from imgcls.teach import recipe
from imgcls.ui.common import nav, state
from imgcls.ui.common.text import plain

MAX_SHOWN = 20_000  # characters: bulk edits of thousands of images would make every rerun send megabytes


def show_code(code: str, what: str) -> None:
    """A closed expander with runnable Python for this step, and a line on where to run it."""
    with st.expander("Show the code", icon=":material/code:"):
        st.caption(f"The Python that {plain(what)}, with your current values. It runs anywhere imgcls is installed "
                   "(a script, a notebook, a terminal) and works on the same workspace folder as this app.")
        if len(code) > MAX_SHOWN:
            cut = code.rfind("\n", 0, MAX_SHOWN)
            code = code[:cut] + "\n# … cut short here: the Learn page downloads the whole session as a script.\n"
        st.code(code, language="python")


def show_data_code(dataset: str) -> None:
    """The import calls that build this dataset."""
    code = recipe.data_code(dataset) + (
        "\ndf = workspace.read_manifest(DATASET)\n"
        "print(df[~df.excluded].groupby(['label', 'split']).size().unstack(fill_value=0))\n")
    show_code(code, "imports this dataset, repeats your label edits and counts its images per class and split")


def show_augment_code(dataset: str, pipeline: dict | None) -> None:
    """The pipeline on screen, saved with the dataset and applied to one of its images."""
    if pipeline is None:
        return
    code = (f"DATASET = {dataset!r}\n" + recipe.augment_code(pipeline) +
            "\nfrom imgcls.ingest import images\nfrom imgcls.store import workspace\n\n"
            "df = workspace.read_manifest(DATASET)\n"
            "photo = images.load_rgb(workspace.dataset_dir(DATASET) / df.path[0])\n"
            "varied = augment.build_pipeline(PIPELINE, 224, seed=0)(image=np.asarray(photo))['image']\n")
    show_code("import numpy as np\n" + code, "builds this augmentation pipeline and applies it to an image")


def show_train_code(config) -> None:
    """The TrainConfig the page would start, trained in the calling process."""
    if config is None:
        return
    values = dataclasses.asdict(config)
    show_code(f"DATASET = {values['dataset']!r}\n" + recipe.train_code(values),
              "trains a model with these settings (as the Start button does, but in your own process)")


def _measure_on_learn(kind: str) -> None:
    st.session_state[state.LEARN_EXPERIMENT] = kind  # the Learn page opens on this experiment


def show_concept(key: str, expanded: bool = False, on_learn: bool = False) -> None:
    """A concept card: the idea in plain words and what to look for when it is measured. Off the Learn page,
    the measurement is not on screen: the card says where it is and opens it."""
    from imgcls.teach.concepts import card

    c = card(key)
    with st.expander(c.title, icon=":material/school:", expanded=expanded):
        st.markdown(c.text)
        if on_learn:
            st.caption(f"What to look for: {c.look_for}")
            return
        st.caption(f"The Learn page measures this on your data with the experiment *{c.question}* "
                   f"What to look for in its plot: {c.look_for}")
        if st.button(f"Run “{c.question}” on the Learn page", key=f"concept.{key}.measure",
                     icon=":material/science:", type="tertiary", on_click=_measure_on_learn, args=(key,)):
            st.switch_page(nav.LEARN.path)


def show_review_code(dataset: str) -> None:
    """The health check and the edits made so far, as calls."""
    code = (recipe.data_code(dataset) +
            "\nfrom imgcls.health import check as health\n\nreport = health.check(DATASET)\nprint(report['score'])\n"
            "for finding in report['findings']:\n"
            "    print(finding['severity'], finding['title'], len(finding['images']))\n")
    show_code(code, "rebuilds this dataset with your edits and checks its health")


def show_evaluate_code(run_id: str, split: str, tta: bool) -> None:
    """Evaluate, predict and export the run on screen."""
    code = (f"run_id = {run_id!r}\n" + recipe.evaluate_code(split, tta) +
            "\nfrom imgcls.evaluate.predict import Predictor\n\n"
            "predictor = Predictor(run_id)\n"
            "rows = predictor.predict([('photo.jpg', open('photo.jpg', 'rb').read())], top_k=3)\n"
            "print(rows[0]['prediction'], rows[0]['confidence'])\n\n"
            "from imgcls.evaluate.export import export_run\n\nexport_run(run_id, 'bundle')  # .pt2, ONNX, TFLite, Core ML, predict.py …\n")
    show_code(code, "evaluates this run, predicts a photo with it and exports it")
