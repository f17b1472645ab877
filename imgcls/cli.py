"""Command line: `python -m imgcls VERB …`; with --json the last line on stdout is one JSON object."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

from imgcls.store import ranges, workspace
from imgcls.train.config import DEFAULT_BACKBONE, TrainConfig


def _print_progress(fraction: float, text: str) -> None:
    end = "\n" if fraction >= 1 else ""
    print(f"\r{fraction:6.1%}  {text[:70]:<70}", end=end, file=sys.stderr, flush=True)


def _progress(args):
    """The progress line's printer, or None when the output is JSON or stderr is not a terminal."""
    return None if args.json or not sys.stderr.isatty() else _print_progress


def cmd_import(args) -> dict:
    """Import a ZIP, a folder or a built-in sample as a dataset."""
    from imgcls.ingest.imports import import_source
    from imgcls.ingest.sources import ImportLimits

    limits = ImportLimits(max_total_bytes=args.max_total_mb * 1024**2, max_files=args.max_files,
                          max_ratio=args.max_ratio, max_pixels=args.max_pixels)
    report = import_source(args.src, args.name, labels=args.labels, seed=args.seed, limits=limits,
                           add=args.add, progress=_progress(args))
    out = report.to_json()
    if not args.json:
        print(f"Imported {out['images']} images into '{out['name']}': {out['classes']} classes, "
              + ", ".join(f"{k} {v}" for k, v in out["splits"].items()))
        for item in out["skipped_files"]:
            print(f"  skipped {item['file']}: {item['detail']}")
        for warning in out["warnings"]:
            print(f"  note: {warning}")
    return out


def cmd_datasets(args) -> dict:
    """List the datasets in the workspace."""
    names = workspace.list_datasets()
    if not args.json:
        print("\n".join(names) if names else "No datasets yet: try `python -m imgcls import sample:shapes`.")
    return {"datasets": names, "home": str(workspace.home())}


def cmd_rename(args) -> dict:
    """Rename a dataset."""
    new = workspace.rename_dataset(args.old, args.new)
    if not args.json:
        print(f"Renamed '{args.old}' to '{new}'.")
    return {"old": args.old, "new": new}


def cmd_delete(args) -> dict:
    """Delete a dataset and its images."""
    if not args.yes:
        raise workspace.WorkspaceError(f"Deleting '{args.name}' cannot be undone: add --yes to confirm.")
    workspace.delete_dataset(args.name)
    if not args.json:
        print(f"Deleted '{args.name}'.")
    return {"deleted": args.name}


def cmd_backbones(args) -> dict:
    """List the backbones with their size and where their weights come from."""
    from imgcls.vision.models import list_backbones

    rows = list_backbones()
    if not args.json:
        for row in rows:
            print(f"{row['name']:<28} {row['params_millions']:>7.1f} M  {row['weights']:<24} {row['description']}")
    return {"backbones": rows}


def cmd_train(args) -> dict:
    """Train a classifier on a dataset (or run/resume a prepared run) and report the result."""
    from imgcls.jobs import dist
    from imgcls.store import runnames, runs
    from imgcls.train.run import TrainConfig, prepare_run, resolve_device, run

    echo = (lambda text: print(text, file=sys.stderr)) if args.json else print
    dist.setup(resolve_device(args.device))
    if not dist.is_main():
        echo = lambda text: None  # noqa: E731 - one voice under torchrun
    if args.run or args.resume:
        run_id = args.run or args.resume
        runs.read_config(run_id)
    else:
        if not args.dataset:
            raise ValueError("Say which dataset to train on: --dataset NAME.")
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                                if hasattr(args, f.name)})  # a field left off the command line: its default
        run_id = dist.share(prepare_run(config) if dist.is_main() else None)
        echo(f"Run {run_id} ({runnames.display_name(run_id)}): {runs.run_dir(run_id)}")
    try:
        result = run(run_id, echo=echo, resume=bool(args.resume))
    except KeyboardInterrupt:  # Ctrl-C is a stop by the user too: the model saved so far stays usable
        kept = "; the best model so far is kept." if runs.kept_model(run_id) else " before it saved a model."
        runs.write_status(run_id, state="cancelled", message=f"Stopped by the user (Ctrl-C){kept}",
                          finished=time.time())
        raise
    except Exception:
        if runs.read_status(run_id).get("state") != "cancelled":
            raise
        raise RuntimeError(_stopped_message(run_id)) from None  # Stop (or `imgcls stop`) ended it
    finally:
        dist.cleanup()
    if not args.json and "suggestion" in result:
        print(f"Suggested learning rate: {result['suggestion']:.2e}")
    elif not args.json:
        print(f"Done: validation accuracy {result['val_accuracy']:.3f}, loss {result['val_loss']:.3f}, "
              f"{result['epochs']} epochs in {result['seconds']:.1f} s on {result['device']}.")
    return {**result, "name": runnames.display_name(run_id)}


def run_row(run_id: str) -> dict:
    """One run as the command line lists it: id (the key), name, how it ended, its model's accuracy."""
    from imgcls.store import runnames, runs

    config, status = runs.read_config(run_id), runs.read_status(run_id)
    result = status.get("result") or {}
    return {"run": run_id, "name": runnames.display_name(run_id, config), "dataset": config.get("dataset"),
            "strategy": config.get("strategy"), "task": config.get("task", "train"),
            **{k: status.get(k) for k in ("state", "progress", "message")},
            "val_accuracy": result.get("val_accuracy"), "best_epoch": result.get("best_epoch"),
            "stopped_early": runs.stopped_early(status), "usable": runs.usable(run_id, config, status)}


def _stopped_message(run_id: str) -> str:
    """What a stopped training command says: the run, and the model it kept (if it saved one)."""
    from imgcls.store import runs

    row, status = run_row(run_id), runs.read_status(run_id)
    if not row["usable"]:
        return f"Run {run_id} ({row['name']}) was stopped before it saved a model."
    return (f"Run {run_id} ({row['name']}) was stopped. {runs.stopped_summary(runs.read_config(run_id), status)} "
            f"Evaluate it: python -m imgcls evaluate {run_id}")


def cmd_runs(args) -> dict:
    """List training runs with their names and state, or rename one (`runs rename RUN NAME`)."""
    from imgcls.store import runnames, runs

    if getattr(args, "action", None) == "rename":
        name = runnames.rename_run(args.run, args.name)
        if not args.json:
            print(f"{args.run} is now called '{name}'.")
        return {"run": args.run, "name": name}
    rows = [run_row(r) for r in runs.list_runs()]
    if not args.json:
        for row in rows:
            acc = f"{row['val_accuracy']:.1%}" if isinstance(row["val_accuracy"], (int, float)) else "–"
            state = "stopped early" if row["stopped_early"] else row["state"] or "?"
            print(f"{row['name'][:32]:<32} {state:<14} {acc:>6}  {row['run']}  {row['message'] or ''}")
    return {"runs": rows}


def _web_address(text: str) -> str:
    """An http(s) address, refused by the parser otherwise (before anything is published)."""
    if not text.startswith(("http://", "https://")) or len(text) < 10:
        raise argparse.ArgumentTypeError(f"'{text}' is not a web address: it starts with http:// or https://")
    return text.rstrip("/")


def cmd_publish(args) -> dict:
    """Give a run's demo a shareable link (a new unguessable token, or the one it already has)."""
    from imgcls.share import demo
    from imgcls.store import access

    token = demo.publish(args.run, args.expires)
    config = access.load_config()
    base = args.base_url or config.demo_url or config.public_url or demo.guess_base_url()
    out = {"url": demo.link(token, base), "token": token, "run": args.run, "expires": demo.expiry_of(args.run)}
    if not args.json:
        print(out["url"])
        if not config.public_url:
            print("Others reach it while the demo server runs: python -m imgcls serve-demo", file=sys.stderr)
    return out


def cmd_unpublish(args) -> dict:
    """Revoke every demo link of a run."""
    from imgcls.share import demo

    revoked = demo.unpublish(args.run)
    if not args.json:
        print(f"{args.run}: {revoked} demo link(s) revoked." if revoked else f"{args.run} had no demo link.")
    return {"run": args.run, "revoked": revoked}


def cmd_serve_demo(args) -> dict:
    """Serve the published demos, and nothing else, to other machines."""
    from imgcls.share import server as demoserver

    print(f"Serving demos on http://{args.address}:{args.port} (Ctrl+C stops)", file=sys.stderr)
    demoserver.serve(args.port, args.address)
    return {}


def cmd_stop(args) -> dict:
    """Stop a running or queued training job; the best model it saved so far stays usable."""
    from imgcls.train.runjobs import stop

    stop(args.run)
    row = run_row(args.run)
    if not args.json:
        print(f"{args.run} ({row['name']}): {row['state']}. {row['message'] or ''}")
    return row


def cmd_evaluate(args) -> dict:
    """Evaluate a run on a split: metrics, and the predictions table saved with the run."""
    from imgcls.evaluate.evaluation import evaluate
    from imgcls.train.run import resolve_device

    result = evaluate(args.run, args.split, args.tta, resolve_device(args.device))
    row = run_row(args.run)
    result = {**result, "name": row["name"], "stopped_early": row["stopped_early"]}
    if not args.json:
        print(f"{row['name']}{' (stopped early)' if row['stopped_early'] else ''}, {args.run}, on {args.split}"
              f"{' with TTA' if args.tta else ''}: accuracy {result['accuracy']:.3f}, "
              f"balanced {result['balanced_accuracy']:.3f}, macro F1 {result['macro_f1']:.3f}, ECE {result['ece']:.3f}")
        for name, row in result["per_class"].items():
            print(f"  {name:<20} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                  f"F1 {row['f1']:.3f}  ({row['support']} images)")
        print(f"Predictions: {result['predictions']}")
    return result


def cmd_predict(args) -> dict:
    """Predict images, folders or ZIPs with a trained run; optionally write a CSV. Rows say whether an image
    is unlike the training images (`unfamiliar`, `distance`) once the run's reference can be built."""
    from imgcls.evaluate.predict import Predictor, read_inputs, to_csv
    from imgcls.train.run import resolve_device

    predictor = Predictor(args.run, resolve_device(args.device))
    files, errors = read_inputs(args.images)
    rows = predictor.predict(files, top_k=args.top_k, min_confidence=args.min_confidence) + errors
    if args.csv:
        workspace.atomic_write_text(Path(args.csv), to_csv(rows, predictor.classes))
    if not args.json:
        for r in rows:
            print(f"{r['file']}: " + (f"{r['prediction']} ({r['confidence']:.1%})" if "prediction" in r
                                      else f"skipped, {r['error']}")
                  + ("  [unlike the training images: the answer may be meaningless]" if r.get("unfamiliar") else ""))
    return {"run": args.run, "predictions": rows, "csv": args.csv}


def cmd_export(args) -> dict:
    """Write a run's export bundle: safetensors, .pt2, ONNX, TFLite, Core ML, preprocessing, goldens, predict.py."""
    from imgcls.evaluate.export import export_run, skipped

    if args.bundle:  # the Evaluate page's background job: the ZIP beside the run, built once per model
        from imgcls.evaluate.exportjob import run_job

        bundle = run_job(args.run)
        if not args.json:
            print(f"The export bundle of {args.run}: {bundle}")
            print("".join(f"Not in it: {line}\n" for line in skipped(bundle)), end="")
        return {"run": args.run, "bundle": str(bundle), "skipped": skipped(bundle)}
    out = export_run(args.run, args.out, only=args.formats)
    files = sorted(p.name for p in out.iterdir())
    row = run_row(args.run)
    if not args.json:
        print(f"Exported {row['name']} ({args.run}"
              f"{', stopped early' if row['stopped_early'] else ''}) to {out}: {', '.join(files)}")
        print("".join(f"Not in it: {line}\n" for line in skipped(out)), end="")
        print(f"Try it: cd {out} && python predict.py goldens/*.*")
    return {"run": args.run, "name": row["name"], "stopped_early": row["stopped_early"], "out": str(out),
            "files": files, "skipped": skipped(out)}


def _optional_formats(text: str) -> set[str]:
    """--formats: optional export formats, comma-separated, or "none"."""
    from imgcls.evaluate.formats import optional

    chosen = {t.strip().lower() for t in text.split(",") if t.strip()} - {"none"}
    if unknown := sorted(chosen - set(optional())):
        raise argparse.ArgumentTypeError(f"no export format {', '.join(unknown)}: choose from "
                                         f"{', '.join(optional())}, or none")
    return chosen


def cmd_experiment(args) -> dict:
    """Run a Learn-lab experiment and print its conclusion, written from the numbers it measured."""
    from imgcls.lab.experiments import ExperimentConfig, prepare, run_job

    config = ExperimentConfig(kind=args.kind, dataset=args.dataset, mode=args.mode, seed=args.seed)
    progress = _progress(args)
    # always under an id, so an experiment run here also shows on the Learn page
    result = run_job(args.id or prepare(config), config, progress)
    if not args.json:
        print(result["conclusion"])
        for row in result["table"]:
            print("  " + "  ".join(f"{k}: {f'{v:.3f}' if isinstance(v, float) else v}" for k, v in row.items()))
    return result


def cmd_measure_labels(args) -> dict:
    """Measure what each transform of a queued label-safety measurement does to accuracy (the app's job)."""
    from imgcls.augment.measurejob import run_job

    result = run_job(args.name, args.key, echo=_progress(args))
    if not args.json:
        print(f"Measured {len(result['transforms'])} transform(s) on '{args.name}' in {result['seconds']:.1f} s.")
    return result


def cmd_headroom(args) -> dict:
    """Measure whether fine-tuning is expected to beat the last layer alone (the Train page's check)."""
    from imgcls.train import headroom

    echo = _progress(args)
    if args.key:  # the Train page's background job
        result = headroom.run_job(args.name, args.key, echo=echo)
    else:
        size = TrainConfig(args.name, backbone=args.backbone, strategy="finetune", img_size=args.img_size)
        result = headroom.measure(args.name, args.backbone, size.resolved().img_size, progress=echo)
    if not args.json:
        print(headroom.explain(result).replace("**", "").replace("`", ""))
    return result


def cmd_score_submission(args) -> dict:
    """Score a class board submission on the class's hidden test images (the app's background job)."""
    from imgcls.classroom import scoring

    echo = _progress(args)
    if args.job:  # started by the board: progress and the outcome go to the submission's status.json
        score = scoring.run_job(args.class_id, args.sub, args.device, echo)
    else:
        score = scoring.score(args.class_id, args.sub, args.device, echo)
    if not args.json:
        print(f"Submission {args.sub}: accuracy {score['accuracy']:.3f}, macro F1 {score['macro_f1']:.3f} "
              f"on {score['n']} hidden test images.")
    return {k: score[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "n", "dataset")}


def cmd_health(args) -> dict:
    """Check a dataset for wrong labels, copies, leaks and poor images; print the score and findings."""
    from imgcls.health.check import check
    from imgcls.health.job import run_job

    echo = _progress(args)
    if args.job:  # started by the app: progress and the outcome go to datasets/NAME/health-status.json
        report = run_job(args.name, device=args.device, echo=echo)
    else:
        report = check(args.name, progress=echo, device=args.device, img_size=args.img_size)
    if not args.json:
        print(f"Health of '{args.name}': {report['score']}/100 ({report['images_checked']} images checked)")
        for f in report["findings"]:
            print(f"  {f['severity']:<6}  {f['title']}: {len(f['images'])}")
        if not report["findings"]:
            print(f"  {report.get('message') or 'No problems found.'}")
    return report


def cmd_report(args) -> dict:
    """Write the health report as one HTML file (checking again when the saved one is missing or stale)."""
    from imgcls.health import check as health
    from imgcls.health.report import render

    report = health.load(args.name)
    if health.is_stale(args.name, report):
        report = health.check(args.name, progress=_progress(args), device=args.device)
    workspace.atomic_write_text(Path(args.out), render(args.name, report))
    if not args.json:
        print(f"Wrote {args.out}: score {report['score']}/100, {len(report['findings'])} findings.")
    return {"dataset": args.name, "out": str(args.out), "score": report["score"],
            "findings": len(report["findings"])}


class Refused(Exception):
    """A command line that argparse refuses (an unknown option, a number out of range)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose refusals reach main(), which says them in one plain line (exit code 2)."""

    def error(self, message: str):
        raise Refused(f"{message.rstrip('.')}. See: {self.prog} --help")


def _add_config_options(parser: argparse.ArgumentParser, config_class) -> None:
    """One option per field of a config dataclass (`--batch-size` for batch_size), with the field's default and
    the help line and form its metadata gives (trainconfig.option); numbers are checked with ranges.TRAIN."""
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        form = f.metadata
        if form.get("cli", True) is False:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else \
            None if f.default is dataclasses.MISSING else f.default
        common = {"dest": f.name, "default": default, "help": form.get("help")}
        if "flag" in form:  # a switch that sets the field to one value (--lr-find: task "lr_find")
            option, value = form["flag"]
            parser.add_argument(option, action="store_const", const=value, **common)
        elif hints[f.name] is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(f"--{f.name.replace('_', '-')}", action=action, **common)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=_parse_of(f.name, hints[f.name], form),
                                choices=form.get("choices"), **common)


def _parse_of(name: str, hint, form):
    """How an option reads its text: the field's own parser, else its range, else its plain number type."""
    if form.get("parse"):
        return form["parse"]
    if name in ranges.TRAIN:
        return ranges.TRAIN[name].parse
    kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None  # anything else stays text


def _hide(verbs, *names: str) -> None:
    """Keep verbs only the app's background jobs call out of --help (argparse has no switch for it: a help of
    SUPPRESS is printed as it is)."""
    verbs._choices_actions = [a for a in verbs._choices_actions if a.dest not in names]
    verbs.metavar = "{" + ",".join(n for n in verbs.choices if n not in names) + "}"


def build_parser() -> argparse.ArgumentParser:
    """All verbs and their options."""
    parser = _Parser(prog="python -m imgcls", description="imgcls: image classification from a folder of photos")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("import", help="import a ZIP, a folder or sample:shapes / sample:digits")
    p.add_argument("src", help="a .zip, a folder, or sample:shapes / sample:digits")
    p.add_argument("--name", help="dataset name (default: the file or sample name)")
    p.add_argument("--labels", help="CSV of filename,label[,split] for a ZIP of unsorted images")
    p.add_argument("--add", action="store_true", help="add to an existing dataset of that name")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    caps = {name: allowed.parse for name, allowed in ranges.IMPORT.items()}
    p.add_argument("--max-total-mb", type=caps["max_total_mb"], default=4096, help="cap on the unpacked size")
    p.add_argument("--max-files", type=caps["max_files"], default=200_000, help="cap on the number of files")
    p.add_argument("--max-ratio", type=caps["max_ratio"], default=200.0, help="cap on a file's compression ratio")
    p.add_argument("--max-pixels", type=caps["max_pixels"], default=40_000_000, help="cap on pixels per image")
    p.set_defaults(func=cmd_import)

    verbs.add_parser("datasets", help="list datasets").set_defaults(func=cmd_datasets)
    p = verbs.add_parser("rename", help="rename a dataset")
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(func=cmd_rename)
    p = verbs.add_parser("delete", help="delete a dataset")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_delete)
    verbs.add_parser("backbones", help="list backbones").set_defaults(func=cmd_backbones)

    p = verbs.add_parser("train", help="train a classifier on a dataset")
    _add_config_options(p, TrainConfig)
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument("--run", metavar="RUN", help=argparse.SUPPRESS)  # a run prepared by the app
    p.set_defaults(func=cmd_train)
    p = verbs.add_parser("runs", help="list training runs, or rename one: runs rename RUN NAME")
    p.set_defaults(func=cmd_runs)
    p = p.add_subparsers(dest="action").add_parser("rename", help="give a run a new name (the id stays)")
    p.add_argument("run")
    p.add_argument("name", help="a new name: at most 60 characters, no control characters")
    # given after the names; `runs --json rename …` keeps the flag read before them
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")
    p = verbs.add_parser("evaluate", help="metrics and predictions of a run on a split")
    p.add_argument("run")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--tta", action="store_true", help="average with the mirrored image")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(func=cmd_evaluate)
    p = verbs.add_parser("predict", help="predict images, folders or ZIPs with a trained run")
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--csv", help="write the predictions to this CSV file")
    p.add_argument("--top-k", type=ranges.PREDICT["top_k"].parse, default=3)
    p.add_argument("--min-confidence", type=ranges.PREDICT["min_confidence"].parse, default=0.0,
                   help="below this, the answer is 'not sure'")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)
    p = verbs.add_parser("export", help="export a run: safetensors, .pt2, ONNX, TFLite, Core ML, predict.py, goldens")
    p.add_argument("run")
    p.add_argument("--formats", type=_optional_formats, metavar="LIST",
                   help="with --out: the optional formats to write besides .pt2 and ONNX, comma-separated "
                        "(tflite, coreml; default both, where `pip install -e .[export]` installed their converters), "
                        "or none")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="a new folder for the bundle")
    where.add_argument("--bundle", action="store_true",
                       help="build the run's export ZIP in its folder (as the Evaluate page does)")
    p.set_defaults(func=cmd_export)
    p = verbs.add_parser("publish", help="share a run's predict view: prints the demo link")
    p.add_argument("run")
    p.add_argument("--base-url", type=_web_address, help="the address others reach the demo server at, e.g. http://10.0.0.5:8502")
    p.add_argument("--expires", type=ranges.EXPIRES.parse, metavar="DAYS",
                   help="the link stops working after this many days")
    p.set_defaults(func=cmd_publish)
    p = verbs.add_parser("unpublish", help="revoke a run's demo links")
    p.add_argument("run")
    p.set_defaults(func=cmd_unpublish)
    p = verbs.add_parser("serve-demo", help="serve published demos (and nothing else) to other machines")
    p.add_argument("--port", type=ranges.PORT.parse, default=8502)
    p.add_argument("--address", default="0.0.0.0", help="the address to listen on (0.0.0.0: every network)")
    p.set_defaults(func=cmd_serve_demo)
    p = verbs.add_parser("stop", help="stop a training run")
    p.add_argument("run")
    p.set_defaults(func=cmd_stop)
    p = verbs.add_parser("experiment", help="run a Learn-lab experiment: transfer, augmentation, data-size, …")
    p.add_argument("kind", choices=["transfer", "augmentation", "data-size", "variability", "label-noise"])
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--mode", default="quick", choices=["quick", "thorough"],
                   help="quick: linear probes on cached features; thorough: real fine-tuning runs")
    p.add_argument("--seed", type=ranges.TRAIN["seed"].parse, default=0)
    p.add_argument("--id", help="experiment id: write config, status and result under experiments/ID")
    p.set_defaults(func=cmd_experiment)
    p = verbs.add_parser("health", help="check a dataset: wrong labels, copies, leaks, poor images")
    p.add_argument("name")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (features are cached either way)")
    p.add_argument("--img-size", type=ranges.TRAIN["img_size"].parse, default=None,
                   help="embed at this size (default: a default linear run's, whose features it then reuses)")
    p.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # a background check started by the app
    p.set_defaults(func=cmd_health)
    p = verbs.add_parser("measure-labels")  # the Augment page's background measurement
    p.add_argument("name")
    p.add_argument("--key", required=True)
    p.set_defaults(func=cmd_measure_labels)
    p = verbs.add_parser("headroom", help="measure whether fine-tuning is expected to beat the last layer alone")
    p.add_argument("name")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--img-size", type=ranges.TRAIN["img_size"].parse, default=None,
                   help="default: a finetune run's")
    p.add_argument("--key", help=argparse.SUPPRESS)  # a measurement queued by the Train page
    p.set_defaults(func=cmd_headroom)
    p = verbs.add_parser("score-submission")  # a class board's background scoring
    p.add_argument("class_id")
    p.add_argument("sub")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_score_submission)
    p = verbs.add_parser("report", help="write the health report as one HTML file")
    p.add_argument("name")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.set_defaults(func=cmd_report)
    for sub in verbs.choices.values():
        sub.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    _hide(verbs, "measure-labels", "score-submission")
    return parser


def main(argv=None) -> int:
    """Run one verb; failures print one plain line and exit non-zero (2: the command line was refused)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except Refused as exc:  # nothing has run: no run folder, no dataset
        return _fail(str(exc), "--json" in argv, 2)
    try:
        out = args.func(args)
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI promises a one-line message, never a stack trace
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, args.json, 1)
    if args.json and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the job
        print(json.dumps(out, ensure_ascii=False))
    return 0


def _fail(message: str, as_json: bool, code: int) -> int:
    if as_json:
        print(json.dumps({"error": message}, ensure_ascii=False))
    print(f"imgcls: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
