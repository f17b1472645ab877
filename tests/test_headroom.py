"""The check before a finetune run: the probe on the top and the stages below it, its rule, its job and its CLI."""
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgcls import jobs
from imgcls.augment import measurejob
from imgcls.cli import main
from imgcls.ingest import imports as data
from imgcls.train import headroom

SMALL = 64  # px: the tests measure the way the app does, on smaller squares
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_the_rule_expects_finetune_to_help_only_where_a_lower_stage_beats_the_top():
    assert headroom.verdict(0.96, [0.955, 0.90]) == "linear"  # hymenoptera's shape: the top is best
    assert headroom.verdict(0.84, [0.85, 0.86]) == "finetune"  # the digits sample's: a lower stage is better
    assert headroom.verdict(0.989, [0.989, 0.889]) == "linear"  # the shapes sample's tie: nothing to gain
    assert headroom.verdict(0.80, [0.79, 0.801]) == "finetune"  # any stage below
    assert headroom.verdict(0.995, [0.996]) == "linear"  # no room left to win
    assert headroom.verdict(0.7, []) == "linear"  # nothing to compare with


def manifest(counts: dict[str, int], split: str = "train") -> pd.DataFrame:
    rows = [{"path": f"{c}/{i}.png", "hash": f"{c}{i}", "label": c, "split": split, "excluded": False}
            for c, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows)


def test_the_sample_keeps_every_class_in_proportion_and_leaves_out_validation_and_excluded_images():
    df = pd.concat([manifest({"a": 900, "b": 95, "c": 5}), manifest({"a": 50}, "val")], ignore_index=True)
    df.loc[0, "excluded"] = True
    rows = headroom.sample_rows(df, limit=200)
    counts = rows["label"].value_counts().to_dict()
    assert counts == {"a": 180, "b": 19, "c": 5}  # in proportion, and the rare class keeps a fold's worth
    assert set(rows["split"]) == {"train"} and "a/0.png" not in set(rows["path"])
    assert rows.index.is_monotonic_increasing  # the manifest's order
    assert headroom.sample_rows(df, limit=200, seed=0).equals(rows)  # seeded
    small = manifest({"a": 30, "b": 40})
    assert headroom.sample_rows(small).equals(small)  # all of a small set


def test_the_sample_refuses_a_class_with_one_training_image_by_name():
    with pytest.raises(headroom.HeadroomError, match="Class 'b' has a single training image"):
        headroom.sample_rows(manifest({"a": 10, "b": 1}))
    with pytest.raises(headroom.HeadroomError, match="at least two classes"):
        headroom.sample_rows(manifest({"a": 10}))


def test_the_measurement_scores_the_top_and_two_stages_below_it_on_real_images(imgcls_home):
    data.import_sample("digits", "digits")
    found = headroom.measure("digits", "efficientnet_lite0", SMALL)
    assert found["images"] == headroom.SAMPLE and found["classes"] == 10 and found["img_size"] == SMALL
    assert len(found["below"]) == headroom.BELOW
    assert all(0.3 < a <= 1.0 for a in [found["top"], *found["below"]])  # far above chance (0.1) at every depth
    assert found["verdict"] == headroom.verdict(found["top"], found["below"])
    text = headroom.explain(found)
    assert f"{found['top']:.0%}" in text and "400 training images" in text


def wait_done(status, limit: float = 240) -> dict:
    deadline = time.time() + limit
    while status().get("state") in jobs.ACTIVE and time.time() < deadline:
        time.sleep(0.5)
    return status()


def test_the_check_runs_as_a_background_job_and_from_the_command_line(imgcls_home, capsys):
    data.import_sample("shapes", "shapes")
    choices = {"backbone": "efficientnet_lite0", "img_size": SMALL}
    key = measurejob.key_of("shapes", [{"headroom": choices}], "v1")
    headroom.start("shapes", choices, key)
    status = wait_done(lambda: measurejob.status("shapes", key))
    assert status.get("state") == "done", status
    found = measurejob.result("shapes", key)
    assert found["verdict"] in ("linear", "finetune") and found["images"] == 350  # shapes: 70% of 500 train
    capsys.readouterr()
    assert main(["headroom", "shapes", "--img-size", str(SMALL), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the same images, backbone and size: the job's numbers (another process may round a feature differently
    # and move one borderline image)
    assert np.allclose([printed["top"], *printed["below"]], [found["top"], *found["below"]], atol=1.5 / 350)


def test_the_train_page_offers_the_check_for_finetune_and_shows_what_it_expects(app_home):
    from streamlit.testing.v1 import AppTest

    from imgcls.store import workspace
    from imgcls.ui.common import nav

    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(nav.TRAIN.path).run()
    assert not [b for b in at.button if b.key == "train.headroom"]  # linear, the default: nothing to check
    at.radio(key="train.strategy").set_value("finetune").run()
    at.number_input(key="train.img_size").set_value(SMALL).run()
    at.button(key="train.headroom").click().run()
    deadline = time.time() + 240
    while not [i for i in at.info if "expected" in i.value] and time.time() < deadline:
        time.sleep(0.5)
        at.run()  # what the page's polling fragment does every second
    shown = [i.value for i in at.info if "expected" in i.value]
    assert len(shown) == 1 and "350 training images" in shown[0], shown
    assert not at.error and not at.exception
    at.radio(key="train.strategy").set_value("linear").run()
    assert not [i for i in at.info if "expected" in i.value]  # only beside a finetune run's settings


def test_where_linear_is_expected_the_page_offers_to_switch_to_it(app_home, mk):
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    from imgcls.ingest.imports import import_zip
    from imgcls.store import workspace
    from imgcls.train.config import DEFAULTS
    from imgcls.ui.common import nav

    # reddish and bluish noise: any depth of the network tells them apart, so the top leaves nothing to win
    tints = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    members = [(f"{c}/{i:03d}.png", mk.encode(Image.blend(mk.noise(100 * k + i), mk.solid(rgb), 0.85), "PNG"))
               for k, (c, rgb) in enumerate(tints.items()) for i in range(20)]
    import_zip(mk.zip(members), "tints")
    workspace.save_setting("active_dataset", "tints")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(nav.TRAIN.path).run()
    at.radio(key="train.strategy").set_value("finetune").run()
    assert at.number_input(key="train.epochs").value == DEFAULTS["finetune"]["epochs"]
    at.number_input(key="train.img_size").set_value(SMALL).run()
    assert not [b for b in at.button if b.key == "train.headroom.linear"]  # nothing measured yet
    at.button(key="train.headroom").click().run()
    deadline = time.time() + 240
    while not [i for i in at.info if "expected" in i.value] and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    shown = [i.value for i in at.info if "expected" in i.value]
    assert len(shown) == 1 and "linear) is expected to do as well" in shown[0], shown
    at.button(key="train.headroom.linear").click().run()
    assert at.radio(key="train.strategy").value == "linear"
    assert at.number_input(key="train.epochs").value == DEFAULTS["linear"]["epochs"]  # linear's own defaults
    assert not [i for i in at.info if "expected" in i.value] and not at.exception
