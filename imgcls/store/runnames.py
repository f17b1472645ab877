"""Run names: short, readable, unique in the workspace and editable ('shapes linear 3'); the id stays the key.

The name lives in the run's config.json; runs made before names get one from their dataset, strategy and start.
"""

from __future__ import annotations

import time
import unicodedata

from imgcls.store import runs, workspace

NAME_MAX = 60  # characters of a run name: fits a picker line beside the dataset and the accuracy
# Invisible characters that would make two names look alike or reorder the text around them (bidi
# overrides); zero-width joiners stay, since emoji sequences need them.
_REFUSED = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_JOINERS = {"\u200c", "\u200d"}


def _names_lock():
    """One naming at a time, so two runs created or renamed at once cannot take the same name."""
    return workspace.file_lock("run-names.lock")


def check_run_name(name) -> str:
    """The one rule for run names: trimmed, 1 to NAME_MAX characters, no control or invisible characters."""
    text = str(name if name is not None else "").strip()
    if not text:
        raise workspace.WorkspaceError("A run name cannot be empty.")
    if len(text) > NAME_MAX:
        raise workspace.WorkspaceError(f"A run name has at most {NAME_MAX} characters; this one has {len(text)}.")
    bad = next((c for c in text if unicodedata.category(c) in _REFUSED and c not in _JOINERS), None)
    if bad is not None:
        raise workspace.WorkspaceError(f"A run name cannot contain control or invisible characters "
                                       f"(found U+{ord(bad):04X}).")
    return text


def _kind(config: dict) -> str:
    strategy = config.get("strategy") or "run"
    return strategy if config.get("task", "train") == "train" else f"{strategy} LR search"


def display_name(run_id: str, config: dict | None = None) -> str:
    """The run's readable name: the one it was given, else one made from its dataset, strategy and start."""
    if config is None:
        config = workspace.read_json(runs.run_dir(run_id) / "config.json", {}) or {}
    if config.get("name"):
        return str(config["name"])
    try:  # runs made before names: the id starts with when they were made
        when = time.strftime("%d %b %H:%M", time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return run_id
    return f"{config.get('dataset') or '?'} {_kind(config)}, {when.lstrip('0')}"


def _configs(but: str | None = None) -> dict[str, dict]:
    return {r: workspace.read_json(runs.run_dir(r) / "config.json", {}) or {} for r in runs.list_runs() if r != but}


def _names(but: str | None = None) -> set[str]:
    return {display_name(r, c).casefold() for r, c in _configs(but).items()}


def new_run_name(dataset: str, strategy: str, task: str = "train") -> str:
    """A short name no other run of the workspace has, such as 'shapes linear 3'."""
    kind = _kind({"strategy": strategy, "task": task})
    base = f"{dataset[:max(NAME_MAX - len(kind) - 6, 8)]} {kind}"
    # a name handed out stays reserved for a minute: its run's config.json is written just after this
    reserved_path = workspace.home() / "locks" / "run-names.json"
    with _names_lock():
        now = time.time()
        reserved = {k: t for k, t in (workspace.read_json(reserved_path, {}) or {}).items() if now - t < 60}
        configs = _configs()
        taken = {display_name(r, c).casefold() for r, c in configs.items()} | set(reserved)
        number = 1 + sum(c.get("dataset") == dataset and _kind(c) == kind for c in configs.values())
        while f"{base} {number}".casefold() in taken:
            number += 1
        workspace.atomic_write_json(reserved_path, {**reserved, f"{base} {number}".casefold(): now})
    return f"{base} {number}"


def rename_run(run_id: str, name: str) -> str:
    """Give a run a new name, checked and unique in the workspace; its id, the key, stays. Returns the name."""
    text = check_run_name(name)
    with _names_lock():
        config = runs.read_config(run_id)
        if text.casefold() in _names(but=run_id):
            raise workspace.WorkspaceError(f"Another run is already called '{text}': choose another name.")
        workspace.atomic_write_json(runs.run_dir(run_id) / "config.json", {**config, "name": text})
    return text


def describe(run_id: str, config: dict, status: dict, dataset: bool = True) -> str:
    """One plain line naming a run for pickers: name, dataset, strategy, accuracy, and how it ended."""
    result = status.get("result") or {}
    parts = [display_name(run_id, config)] + ([str(config.get("dataset"))] if dataset else [])
    parts.append(str(config.get("strategy")))
    if isinstance(result.get("val_accuracy"), (int, float)):
        parts.append(f"{result['val_accuracy']:.1%}")
    if runs.stopped_early(status):
        parts.append("stopped early")
    elif status.get("state") not in (None, "done"):
        parts.append(str(status["state"]))
    return " · ".join(parts)
