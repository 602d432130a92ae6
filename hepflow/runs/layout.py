"""Run directories: what ``train`` writes there and in what state a directory is, read in one place.

``train`` never deletes what it did not write: :data:`RUN_ENTRIES` names everything it (and
``hepflow evaluate``'s default output) may put in a run directory, and only those entries are
removed when a run is replaced with ``overwrite=True``.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from hepflow.errors import RunError
from hepflow.io import remove_path
from hepflow.runs.config import load_config

__all__ = ["RUN_FILES", "RUN_ENTRIES", "run_state", "check_new_run", "clear_run", "read_history", "read_json",
           "finished_run", "package_versions", "git_revision", "samples_record"]

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
    return [name for name in RUN_ENTRIES if remove_path(os.path.join(run_dir, name))]


def read_json(path: str) -> dict[str, Any]:
    """A JSON file of a run as a dict; ``{}`` when it is missing or unreadable."""
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
    for name in ("config.yaml", "model.keras"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise RunError(f"{run_dir} is not a finished run: {name} is missing. Received: run_dir={run_dir!r}")
    return {"dir": run_dir, "config": load_config(os.path.join(run_dir, "config.yaml")),
            "summary": read_json(os.path.join(run_dir, "summary.json"))}


def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages a run depends on (``environment.json``)."""
    out = {"python": platform.python_version()}
    for pkg in ("hepflow", "tensorflow-cpu", "tensorflow", "keras", "numpy", "h5py"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    """The git revision of hepflow's checkout (``+dirty`` with local changes), or ``None``."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def samples_record(splits: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """``samples.yaml``: every split's sample specs, each file with its size and mtime."""
    out: dict[str, Any] = {}
    for split, specs in splits.items():
        out[split] = []
        for spec in specs:
            d = spec.to_dict()
            d["files"] = [{"path": p, "size": os.path.getsize(p), "mtime": os.path.getmtime(p)} for p in spec.files]
            out[split].append(d)
    return out
