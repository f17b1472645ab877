"""Teaching panels: "Show the code" with the imgcls calls behind a page, and concept cards."""

from __future__ import annotations

import dataclasses

import streamlit as st

from imgcls import recipe


def show_code(code: str, what: str) -> None:
    """A closed expander with runnable Python for this step, and a line on where to run it."""
    with st.expander("Show the code", icon=":material/code:"):
        st.caption(f"The Python that {what}, with your current values. It runs anywhere imgcls is installed "
                   "(a script, a notebook, a terminal) and works on the same workspace folder as this app.")
        st.code(code, language="python")


def show_data_code(dataset: str) -> None:
    """The import calls that build this dataset."""
    code = recipe.data_code(dataset) + (
        "\ndf = workspace.read_manifest(DATASET)\n"
        "print(df[~df.excluded].groupby(['label', 'split']).size().unstack(fill_value=0))\n")
    show_code(code, "imports this dataset and counts its images per class and split")


def show_augment_code(dataset: str, pipeline: dict | None) -> None:
    """The pipeline on screen, saved with the dataset and applied to one of its images."""
    if pipeline is None:
        return
    code = (f"DATASET = {dataset!r}\n" + recipe.augment_code(pipeline) +
            "\nfrom imgcls import images, workspace\n\n"
            "df = workspace.read_manifest(DATASET)\n"
            "photo = images.load_rgb(workspace.dataset_dir(DATASET) / df.path[0])\n"
            "varied = augment.build_pipeline(PIPELINE, 224, seed=0)(image=np.asarray(photo))['image']\n")
    show_code("import numpy as np\n" + code, "saves this augmentation pipeline and applies it to an image")


def show_train_code(config) -> None:
    """The TrainConfig the page would start, trained in the calling process."""
    if config is None:
        return
    values = dataclasses.asdict(config)
    show_code(f"DATASET = {values['dataset']!r}\n" + recipe.train_code(values),
              "trains a model with these settings (as the Start button does, but in your own process)")


def show_concept(key: str, expanded: bool = False) -> None:
    """A concept card: the idea in plain words and what to look for when it is measured."""
    from imgcls.concepts import card

    c = card(key)
    with st.expander(c.title, icon=":material/school:", expanded=expanded):
        st.markdown(c.text)
        st.caption(f"What to look for: {c.look_for}")
