"""Keeping the best epoch: ``best.keras`` and early stopping, both carried across a resume.

``training.early_stopping: {monitor: val_loss, patience: 3}`` watches one validation metric:
the run's ``best.keras`` is the model of its best epoch so far, training stops after ``patience``
epochs without improvement, and ``model.keras`` gets the best epoch's weights. After
``hepflow train --resume`` both pick up where the interrupted run stood (best value, epochs
since it, the best weights) from ``history.csv`` and ``best.keras`` instead of starting afresh.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from hepflow.errors import ConfigError

__all__ = ["BestEpoch", "best_so_far", "best_epoch_callbacks", "monitor_mode"]

#: Metrics (without ``val_``) that improve upwards; every other monitored value is minimised.
MAXIMISED = ("auc", "accuracy", "acc")


def monitor_mode(monitor: str) -> str:
    """``"max"`` for AUC and accuracy metrics, ``"min"`` for losses and everything else."""
    return "max" if monitor.removeprefix("val_") in MAXIMISED else "min"


def best_so_far(rows: Sequence[Mapping[str, float]], monitor: str, mode: str) -> tuple[float, int, int] | None:
    """The best finite ``monitor`` value in a run's history rows.

    Args:
        rows: The rows of ``history.csv``, one per completed epoch, in order.
        monitor: The metric, e.g. ``val_loss``.
        mode: ``"min"`` or ``"max"``.

    Returns:
        ``(value, epoch index, epochs since it)``, or ``None`` when no row holds the metric.
    """
    values = [(i, row[monitor]) for i, row in enumerate(rows) if monitor in row and math.isfinite(row[monitor])]
    if not values:
        return None
    pick = min if mode == "min" else max
    index, value = pick(values, key=lambda item: item[1])  # the first of equal values, as Keras counts
    return value, index, len(rows) - 1 - index


class BestEpoch(keras.callbacks.EarlyStopping):
    """Early stopping that restores the best weights, can resume, and rejects a mistyped monitor.

    Args:
        monitor: The validation metric to watch.
        patience: Epochs without improvement before training stops.
        resumed: ``(best value, best epoch, epochs since it)`` of an interrupted run, or ``None``.
        best_weights_path: The run's ``best.keras``, whose weights are the best so far on resume.
    """

    def __init__(self, *, monitor: str = "val_loss", patience: int = 3,
                 resumed: tuple[float, int, int] | None = None, best_weights_path: str | None = None):
        super().__init__(monitor=monitor, patience=patience, mode=monitor_mode(monitor), restore_best_weights=True)
        self.resumed = resumed
        self.best_weights_path = best_weights_path

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.resumed is None:
            return
        self.best, self.best_epoch, self.wait = self.resumed
        if self.best_weights_path and os.path.exists(self.best_weights_path):
            self.best_weights = keras.saving.load_model(self.best_weights_path).get_weights()

    def get_monitor_value(self, logs: Mapping[str, Any] | None) -> float:
        logs = logs or {}
        if self.monitor not in logs:
            raise ConfigError(f"training.early_stopping.monitor names no metric of this model; it has "
                              f"{sorted(logs)}. Received: monitor={self.monitor!r}")
        return logs[self.monitor]


def best_epoch_callbacks(early_stopping: Mapping[str, Any] | None, *, out_dir: str, history: Sequence[Mapping[str, float]],
                         generative: bool) -> list[keras.callbacks.Callback]:
    """The ``best.keras`` checkpoint and early stopping of a run's ``training.early_stopping`` section.

    Args:
        early_stopping: ``{monitor: val_loss, patience: 3}`` (both optional) or ``None`` to switch off.
        out_dir: The run directory.
        history: The rows of ``history.csv`` already completed (a resumed run's), else empty.
        generative: A GAN: without early stopping its losses say little about which epoch is
            best, so no ``best.keras`` is kept.

    Returns:
        The callbacks, possibly none.
    """
    if early_stopping is not None and not isinstance(early_stopping, Mapping):
        raise ConfigError(f"training.early_stopping must be a mapping like {{monitor: val_loss, patience: 3}} "
                          f"or null. Received: {early_stopping!r}")
    unknown = set(early_stopping or {}) - {"monitor", "patience"}
    if unknown:
        raise ConfigError(f"training.early_stopping takes monitor and patience. Received: {sorted(unknown)}")
    if generative and not early_stopping:
        return []
    monitor = str((early_stopping or {}).get("monitor", "val_loss"))
    if not monitor.startswith("val_"):
        raise ConfigError(f"training.early_stopping.monitor must be a validation metric (val_...). "
                          f"Received: monitor={monitor!r}")
    mode = monitor_mode(monitor)
    resumed = best_so_far(history, monitor, mode)
    path = os.path.join(out_dir, "best.keras")
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.ModelCheckpoint(
        path, monitor=monitor, mode=mode, save_best_only=True,
        initial_value_threshold=None if resumed is None else resumed[0])]
    if early_stopping:
        callbacks.append(BestEpoch(monitor=monitor, patience=int(early_stopping.get("patience", 3)),
                                   resumed=resumed, best_weights_path=path))
    return callbacks
