"""``hepflow runs list``: the run directories under a folder and their key metrics."""
from __future__ import annotations

import os
from typing import Any

import yaml

from hepflow.runs.layout import read_history, read_json, run_state

__all__ = ["list_runs", "format_runs"]

#: Columns of the table: (header, key in the run record).
COLUMNS = (("run", "run_dir"), ("model", "model"), ("status", "status"), ("epochs", "epochs"),
           ("val_loss", "best_val_loss"), ("val_auc", "val_auc"), ("val_acc", "val_accuracy"),
           ("train s", "train_seconds"), ("strategy", "strategy"), ("started", "start"))


def _run_record(run_dir: str) -> dict[str, Any]:
    summary = read_json(os.path.join(run_dir, "summary.json"))
    env = read_json(os.path.join(run_dir, "environment.json"))
    try:
        epochs = read_history(os.path.join(run_dir, "history.csv"))
    except (OSError, ValueError):  # an unreadable log still lists the run
        epochs = []
    status = run_state(run_dir)
    if status not in ("finished", "interrupted"):
        status = "started"
    model = summary.get("model")
    if model is None:
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
