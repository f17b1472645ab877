"""The code behind what the user did in the app: `imgcls` calls with their current values, per step, and
the whole session (data, edits, augmentation, training, evaluation) as a runnable script or notebook."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import uuid
from pathlib import Path

from imgcls.ingest import archive
from imgcls.ingest.splits import DEFAULT_RATIOS
from imgcls.store import journal, runs, versions, workspace

SKIP_CONFIG = {"dataset", "device", "augment", "workers", "compile"}  # set by the script, or machine-specific


def _imports(dataset: str, version: dict | None = None) -> list[dict]:
    """The dataset's import records, only those made up to `version` when given."""
    records = workspace.read_jsonl(workspace.dataset_dir(dataset) / "imports.jsonl")
    return records if version is None else records[:int(version.get("imports", len(records)))]


def _call_for(record: dict, first: bool) -> str | None:
    """The import call that brings in one recorded source again; None when it cannot be repeated."""
    rep = record.get("repeat") or {}
    call, arg = rep.get("call"), rep.get("arg")
    if call not in ("import_sample", "import_zip", "import_folder"):
        return None
    if call != "import_sample" and not Path(arg).exists():
        return None
    extra = "" if first else ", add=True"
    if rep.get("seed", 0) != 0:
        extra += f", seed={rep['seed']}"
    if rep.get("ratios") and list(rep["ratios"]) != list(DEFAULT_RATIOS):
        extra += f", ratios={tuple(rep['ratios'])!r}"
    return f"data.{call}({arg!r}, DATASET{extra})"


def data_zip_name(dataset: str, run_id: str | None = None) -> str:
    """File name of the data ZIP the script imports when the original sources cannot be replayed: named after
    the version a run trained on, not after any uploaded file."""
    version = versions.run_version(run_id) if run_id else None
    tag = f"-{version['kept'][:8]}" if version and version.get("kept") else ""
    return f"{workspace.suggest_name(dataset)}-data{tag}.zip"


def data_zip(dataset: str, run_id: str | None = None) -> bytes:
    """The images and labels a run trained on (else the dataset as it is now) as a ZIP the script imports."""
    return archive.export_dataset(dataset, rows=versions.run_rows(run_id) if run_id else None)


def _steps(dataset: str, version: dict | None) -> list[str] | None:
    """Imports and edits in force, in the order they happened (up to `version`); None if an import cannot
    be repeated."""
    records = _imports(dataset, version)
    calls = [_call_for(r, i == 0) for i, r in enumerate(records)]
    if not calls or not all(calls):
        return None
    # an import tops up splits from the manifest as edited so far: the order matters
    steps = [((r.get("repeat") or {}).get("time", ""), c) for r, c in zip(records, calls)]
    upto = None if version is None else int(version.get("journal", 0))
    steps += [(e.get("applied_at", ""), _edit_line(e)) for e in journal.in_force(dataset, upto)]
    steps.sort(key=lambda step: step[0])  # stable: records of equal (second-resolution) times keep imports first
    return [line for _, line in steps]


def _version_head(dataset: str, version: dict, what: str) -> str:
    """Names the version to rebuild; a dataset of that name edited since is left alone, the copy goes beside it."""
    position = int(version.get("journal", 0))
    other = f"{dataset[:48]}-" + (f"edit-{position}" if position else "as-imported")
    return (f"# {what}: {version.get('label', '')}, {version.get('images', '?')} images\n"
            f"KEPT = {version['kept']!r}  # digest of its kept images: path, content hash, label, split\n"
            "if workspace.dataset_exists(DATASET) and versions.kept_digest(workspace.read_manifest(DATASET)) != KEPT:\n"
            f"    DATASET = {other!r}  # edited since: that version is rebuilt beside it\n")


def _version_check(what: str) -> str:
    return ("if versions.kept_digest(workspace.read_manifest(DATASET)) != KEPT:\n"
            f"    raise SystemExit(f\"{{DATASET}} does not hold {what} (a source file changed or is missing?)\")\n")


def data_code(dataset: str, version: dict | None = None, what: str = "the version to rebuild",
              zip_name: str | None = None) -> str:
    """The calls that rebuild the dataset: its imports and label edits in the order they happened (or the
    exported ZIP, edits included, when an import cannot be repeated). With `version`, only the imports and
    edits up to it, and a check that what was built is exactly that version."""
    steps = _steps(dataset, version)
    # FRESH: an existing dataset of that name is used as it is; only a copy made here gets the steps replayed,
    # since replaying on the user's own dataset could delete what they restored since
    head = ("from imgcls.ingest import imports as data\nfrom imgcls.store import journal, versions, workspace\n\n" if version
            else "from imgcls.ingest import imports as data\nfrom imgcls.store import journal, workspace\n\n") + f"DATASET = {dataset!r}\n"
    if version and version.get("kept"):
        head += _version_head(dataset, version, what)
    head += "FRESH = not workspace.dataset_exists(DATASET)\n"
    tail = _version_check(what) if version and version.get("kept") else ""
    if steps is not None:
        return head + "if FRESH:\n" + "".join(f"    {line}\n" for line in steps) + tail
    # uploads from a browser are not kept as files: an exported ZIP of the data stands in for them
    where = ("'Download the data (ZIP)' on the Learn page: put it next to this script" if zip_name
             else "'Cleaned dataset (ZIP)' on the Review page")
    name = zip_name or f"{dataset}.zip"
    return (head + f"ZIP = {name!r}  # {where}\n"
            "if FRESH:  # its manifest.csv gives each file's exact label and split, edits included\n"
            "    import zipfile\n\n"
            "    with zipfile.ZipFile(ZIP) as zf:\n        labels = zf.read('manifest.csv')\n"
            "    data.import_zip(ZIP, DATASET, label_csv=labels)\n" + tail)


def replayable(dataset: str, version: dict | None = None) -> bool:
    """Whether data_code re-imports the original sources and replays the journal's edits."""
    return _steps(dataset, version) is not None


def session_version(dataset: str, run_id: str | None = None) -> dict | None:
    """The dataset version a session script rebuilds: the run's, else the dataset's as it is now."""
    if run_id:
        return versions.run_version(run_id)  # None for runs made before versions were recorded
    return versions.dataset_version(dataset) if workspace.dataset_exists(dataset) else None


def _edit_line(e: dict) -> str:
    """One journal entry as the call that repeats it."""
    paths = [c["path"] for c in e["changes"]]
    if e["action"] == "purge":
        return f"journal.purge_excluded(DATASET, {paths!r})  # deleted for good"
    value = "" if e["action"] in ("exclude", "restore") else f", {e['value']!r}"
    return f"journal.edit(DATASET, {e['action']!r}, {paths!r}{value})  # {journal.describe(e)}"


def augment_code(pipeline: dict) -> str:
    """An albumentations pipeline as data (the Augment page's Save stores it with augment.save_pipeline)."""
    text = json.dumps(pipeline, indent=1)
    return ("import json\nfrom imgcls.augment import pipeline as augment\n\n"
            f"PIPELINE = json.loads({text!r})\n"
            "# augment.save_pipeline(DATASET, PIPELINE)  # what the Save button does: later runs then use it\n")


def train_code(config: dict, augment: str | None = None) -> str:
    """A TrainConfig with the run's values (defaults left out), then training in this process.

    `augment` is the Python expression for the pipeline (a variable of the script); else the run's own choice."""
    fields = {f.name: f.default for f in dataclasses.fields(_train_config())}
    args = [f"{k}={config[k]!r}" for k in fields
            if k in config and k not in SKIP_CONFIG and config[k] != fields[k]]
    if config.get("device") == "cpu":  # results repeat exactly only on the CPU (see loops.reproducible)
        args.append("device='cpu'")
    choice = augment or repr(config.get("augment", "saved") if isinstance(config.get("augment"), str) else "saved")
    body = ",\n    ".join(["dataset=DATASET", f"augment={choice}", *args])
    return ("from imgcls.train.run import TrainConfig, prepare_run, run\n\n"
            f"config = TrainConfig(\n    {body},\n)\nrun_id = prepare_run(config)\nresult = run(run_id)\n"
            "print(run_id, result)\n")


def _train_config():
    from imgcls.train.run import TrainConfig

    return TrainConfig


def evaluate_code(split: str = "val", tta: bool = False) -> str:
    """Evaluate the run on a split and print the headline metrics."""
    extra = ", tta=True" if tta else ""
    return ("from imgcls.evaluate.evaluation import evaluate\n\n"
            f"metrics = evaluate(run_id, split={split!r}{extra})\n"
            "print(f\"accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}\")\n")


def sections(dataset: str, run_id: str | None = None, split: str = "val") -> list[tuple[str, str]]:
    """(explanation, code) pairs reproducing the session, in order."""
    version = session_version(dataset, run_id)
    what = f"the data run {run_id} trained on" if run_id else f"the data of '{dataset}' when this was written"
    out = [("Bring in the images (the same seed gives the same train/validation/test split) and repeat the label "
            "edits made on the Review and Evaluate pages, in the order they happened"
            + (f", up to the version run {run_id} trained on; later edits are left out." if run_id else "."),
            data_code(dataset, version, what, data_zip_name(dataset, run_id)))]
    if run_id:
        config = runs.read_config(run_id)
        out.append(("The augmentation pipeline the run trained with.", augment_code(config["augment_pipeline"])))
        out.append((f"Train as run {run_id} did ({config['strategy']}, {config['backbone']}), with its seed and "
                    f"{config.get('threads') or 'all'} CPU threads: on the same machine's CPU this gives the same "
                    "model to the last digit; on a GPU, or with another thread count, close but not identical "
                    "numbers.", train_code(config, augment="PIPELINE")))
        out.append((f"Evaluate on the {split} split.", evaluate_code(split) + _app_result(run_id)))
    return out


def _app_result(run_id: str) -> str:
    """A line printing what the app's run scored, to set beside the script's own result."""
    acc = (runs.read_status(run_id).get("result") or {}).get("val_accuracy")
    return f"print('run {run_id} in the app: val accuracy {acc:.4f}')\n" if isinstance(acc, float) else ""


def session_script(dataset: str, run_id: str | None = None, split: str = "val") -> str:
    """The session as one runnable Python script."""
    parts = ['"""Reproduces an imgcls session: run with `python this_file.py` where imgcls is installed."""\n']
    for text, code in sections(dataset, run_id, split):
        parts.append("\n".join(f"# {line}" for line in textwrap.wrap(text, 100)) + "\n" + code)
    return "\n".join(parts)


def session_notebook(dataset: str, run_id: str | None = None, split: str = "val") -> str:
    """The session as a Jupyter notebook (nbformat 4 JSON): one explanation and one code cell per step."""
    cells = [_cell("markdown", f"# imgcls session: {dataset}\nEach cell repeats one step done in the app.")]
    for text, code in sections(dataset, run_id, split):
        cells += [_cell("markdown", text), _cell("code", code)]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"},
                                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1, ensure_ascii=False)


def _cell(kind: str, text: str) -> dict:
    lines = text.splitlines(keepends=True)
    cell = {"cell_type": kind, "id": uuid.uuid4().hex[:8], "metadata": {}, "source": lines}
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell
