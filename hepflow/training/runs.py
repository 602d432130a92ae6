"""Run directories: what ``train`` writes there, their state, and ``hepflow runs list``.

``train`` never deletes what it did not write: :data:`RUN_ENTRIES` names everything it (and
``hepflow evaluate``'s default output) may put in a run directory, and only those entries are
removed when a run is replaced with ``overwrite=True``.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from typing import Any

from hepflow.errors import RunError

__all__ = ["RUN_FILES", "RUN_ENTRIES", "run_state", "check_new_run", "clear_run", "list_runs", "format_runs",
           "read_history", "finished_run"]

#: The files every finished run holds.
RUN_FILES = ("config.yaml", "samples.yaml", "environment.json", "history.csv", "model.keras", "summary.json")
#: Everything hepflow writes into a run directory: files, then folders.
RUN_ENTRIES = RUN_FILES + ("best.keras", "backup", "tb", "validation", "evaluation")


def run_state(run_dir: str) -> str:
    """What ``run_dir`` holds.

    Returns:
        ``"absent"`` (no such folder), ``"empty"`` (a folder with none of hepflow's entries,
        possibly other files), ``"finished"`` (``model.keras``), ``"interrupted"`` (a backup to
        resume from) or ``"started"`` (some of hepflow's entries, no backup, no model).
    """
    if not os.path.isdir(run_dir):
        return "absent"
    if os.path.exists(os.path.join(run_dir, "model.keras")):
        return "finished"
    if os.path.exists(os.path.join(run_dir, "backup", "position.json")):
        return "interrupted"
    if any(os.path.lexists(os.path.join(run_dir, name)) for name in RUN_ENTRIES):
        return "started"
    return "empty"


def check_new_run(run_dir: str, *, overwrite: bool) -> None:
    """Raises unless a new run may be written to ``run_dir``; changes nothing on disk.

    A new run may go where no run is, or, with ``overwrite``, replace one.

    Raises:
        RunError: ``run_dir`` is a file, or holds a run (finished, interrupted or started)
            and ``overwrite`` is false.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"The run directory is a file. Received: run_dir={run_dir!r}")
    state = run_state(run_dir)
    if overwrite or state in ("absent", "empty"):
        return
    if state == "finished":
        raise RunError(f"Run directory {run_dir} already holds a finished run (model.keras). Pass another run "
                       f"directory, or overwrite=True (--overwrite) to replace it. Received: run_dir={run_dir!r}")
    if state == "interrupted":
        raise RunError(f"Run directory {run_dir} holds an interrupted run; continue it with "
                       f"`hepflow train --resume {run_dir}` (resume=True), or start afresh with --overwrite "
                       f"(overwrite=True). Received: run_dir={run_dir!r}")
    present = [n for n in RUN_ENTRIES if os.path.lexists(os.path.join(run_dir, n))]
    raise RunError(f"Run directory {run_dir} holds files of an earlier run that never saved a backup "
                   f"({', '.join(present)}); pass --overwrite (overwrite=True) to replace them, or another run "
                   f"directory. Received: run_dir={run_dir!r}")


def clear_run(run_dir: str) -> list[str]:
    """Removes hepflow's entries (:data:`RUN_ENTRIES`) from ``run_dir``, and nothing else.

    Returns:
        The names removed.
    """
    removed = []
    for name in RUN_ENTRIES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed

#: Columns of the table: (header, key in the run record).
COLUMNS = (("run", "run_dir"), ("model", "model"), ("status", "status"), ("epochs", "epochs"),
           ("val_loss", "best_val_loss"), ("val_auc", "val_auc"), ("val_acc", "val_accuracy"),
           ("train s", "train_seconds"), ("strategy", "strategy"), ("started", "start"))


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def read_history(path: str) -> list[dict[str, float]]:
    """The per-epoch rows of a run's ``history.csv`` (``epoch`` included); ``[]`` when there is none yet."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def finished_run(run_dir: str) -> dict[str, Any]:
    """The resolved config and summary of a finished run, for evaluation and export.

    Returns:
        ``{"dir": run_dir, "config": ..., "summary": ...}`` (``summary`` is ``{}`` when the run
        has no readable ``summary.json``).

    Raises:
        DataError: ``config.yaml`` or ``model.keras`` is missing (the run is unfinished).
    """
    from hepflow.training.config import load_config

    for name in ("config.yaml", "model.keras"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise RunError(f"{run_dir} is not a finished run: {name} is missing. Received: run_dir={run_dir!r}")
    return {"dir": run_dir, "config": load_config(os.path.join(run_dir, "config.yaml")),
            "summary": _read_json(os.path.join(run_dir, "summary.json"))}


def _run_record(run_dir: str) -> dict[str, Any]:
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    env = _read_json(os.path.join(run_dir, "environment.json"))
    try:
        epochs = read_history(os.path.join(run_dir, "history.csv"))
    except (OSError, ValueError):  # an unreadable log still lists the run
        epochs = []
    status = run_state(run_dir)
    if status not in ("finished", "interrupted"):
        status = "started"
    model = summary.get("model")
    if model is None:
        import yaml

        try:
            with open(os.path.join(run_dir, "config.yaml")) as f:
                model = (yaml.safe_load(f) or {}).get("model", {}).get("name")
        except (OSError, yaml.YAMLError):
            model = None
    val = [e["val_loss"] for e in epochs if "val_loss" in e]
    best = epochs[val.index(min(val))] if val else {}
    return {"run_dir": run_dir, "model": model, "status": status, "epochs": len(epochs),
            "best_val_loss": min(val) if val else None, "val_auc": best.get("val_auc"),
            "val_accuracy": best.get("val_accuracy"), "train_seconds": summary.get("train_seconds"),
            "strategy": env.get("strategy"), "start": env.get("start")}


def list_runs(root: str = "runs", *, sort_by: str = "run_dir") -> list[dict[str, Any]]:
    """Every run directory (a folder with ``config.yaml`` and ``environment.json``) under ``root``.

    Args:
        root: Folder searched recursively.
        sort_by: A record key (``run_dir``, ``best_val_loss``, ``val_auc``, ...); numbers sort
            best first (lowest loss, highest AUC/accuracy), missing values last.

    Returns:
        One record per run: ``run_dir``, ``model``, ``status`` (finished, interrupted: a backup
        to ``--resume`` from, started), ``epochs``, ``best_val_loss`` and the ``val_auc`` /
        ``val_accuracy`` of that epoch, ``train_seconds``, ``strategy``, ``start``.
    """
    found = []
    for here, dirs, files in os.walk(root):
        if "config.yaml" in files and "environment.json" in files:
            found.append(_run_record(here))
            dirs[:] = []  # a run's own folders (tb/, backup/) hold no runs
        dirs.sort()
    descending = sort_by in ("val_auc", "val_accuracy")

    def key(r):
        v = r.get(sort_by)
        if v is None:
            return (1, 0, "")
        if isinstance(v, (int, float)):
            return (0, -v if descending else v, "")
        return (0, 0, str(v))

    return sorted(found, key=key)


def format_runs(runs: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`list_runs` records."""
    def cell(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    rows = [[h for h, _ in COLUMNS]] + [[f"{r[k]:.0f}" if k == "train_seconds" and r.get(k) is not None
                                         else cell(r.get(k)) for _, k in COLUMNS] for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
