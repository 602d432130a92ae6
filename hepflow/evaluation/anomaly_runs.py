"""Scoring anomaly runs, whose configs hold no truth labels, against named signal files."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

import hepflow.models  # noqa: F401 -- registers hepflow's classes for loading
from hepflow.data import SampleSpec
from hepflow.errors import ConfigError, DataError
from hepflow.evaluation.report import json_safe, tagger_report
from hepflow.io import write_atomic
from hepflow.runs import build_transform, load_config, score_specs, split_specs

__all__ = ["evaluate_anomaly_run", "run_scores"]


def run_scores(run_dir: str, specs: Sequence[SampleSpec], transform, *, score: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, scores)`` of every row of ``specs`` under a run's model, sorted by record id.

    Args:
        score: For anomaly models with several scores, the one to use (``model.score_name``).
    """
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    if score is not None:
        model.score_name = score
    return tuple(score_specs(model, specs, transform=transform, progress=False)[1:])


def evaluate_anomaly_run(run_dir: str, signals: Mapping[str, str], *, out_dir: str | None = None,
                         efficiencies: Sequence[float] = (0.3, 0.5)) -> dict[str, dict[str, float]]:
    """Scores one anomaly run's test background and signal files: AUC, 1/εB, ROC per signal.

    Args:
        run_dir: A finished run of an anomaly model (``training.task: anomaly``) or of a
            label-proportions classifier (``proportions``), whose configs hold no truth labels.
        signals: Signal name → file glob, e.g. ``{"gluino": "data/anomaly/gluino_0001*.h5"}``.
            Test-split samples whose files match a signal glob are not counted as background.
        out_dir: Where ``<signal>/roc.png`` and ``anomaly.json`` go; default ``<run_dir>/evaluation``.

    Returns:
        Signal name → metrics of the run's score.
    """
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    if not signals:
        raise ConfigError(f"{run_dir} has no truth labels: name the signal files to score against its background, "
                          "e.g. --signal gluino='data/anomaly/gluino_*.h5'. Received: no signal")
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    signal_specs = {n: SampleSpec(name=n, files=g, keys=_keys_of(cfg), label=1) for n, g in signals.items()}
    signal_files = {f for spec in signal_specs.values() for f in spec.resolve_files()}
    background = [s for s in split_specs(cfg)["test"] if not set(s.resolve_files()) & signal_files]
    if not background:
        raise DataError(f"{run_dir}: no background test files left (its test split: data.split.test).")
    background = [SampleSpec(**{**s.to_dict(), "label": 0}) for s in background]
    transform = build_transform(cfg)
    table = {}
    for name, spec in signal_specs.items():
        labels, scores = run_scores(run_dir, background + [spec], transform)
        table[name] = tagger_report(labels == 1, {cfg["name"]: scores}, out_dir=os.path.join(out_dir, name),
                                    efficiencies=tuple(efficiencies),
                                    log_dir=os.path.join(out_dir, "tb", name))[cfg["name"]]
    write_atomic(os.path.join(out_dir, "anomaly.json"), json.dumps(json_safe(table), indent=1))
    return table


def _keys_of(cfg: Mapping[str, Any]) -> list[str] | dict[str, str]:
    """The keys the run's samples read (the signal files are read with the same ones)."""
    return cfg["data"]["samples"][0]["keys"]
