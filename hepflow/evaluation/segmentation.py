"""Per-pixel segmentation runs scored on their test files: pixel accuracy per class, confusion matrix."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from hepflow.data import make_dataset
from hepflow.errors import DataError
from hepflow.evaluation.multiclass import _plot_confusion, confusion_matrix
from hepflow.io import write_atomic
from hepflow.physics.lartpc_transport import SEMANTIC_CLASSES
from hepflow.runs import build_transform, finished_run, model_inputs, specs_in_dir, split_specs

__all__ = ["evaluate_segmentation", "format_segmentation"]


def evaluate_segmentation(run_dir: str, *, out_dir: str | None = None, test_dir: str | Sequence[str] | None = None,
                          class_names: Sequence[str] = SEMANTIC_CLASSES, batch_size: int = 16) -> dict[str, Any]:
    """Scores a finished segmentation run on the labelled pixels (target ≥ 0) of its test split.

    Returns:
        ``pixels`` (labelled), ``accuracy``, ``classes`` (name → pixels, accuracy = the fraction
        of its pixels labelled right, purity = the fraction of pixels called it that are it),
        ``confusion`` (rows: true class); ``confusion.png``, ``report.json`` and TensorBoard logs
        go to ``out_dir`` (default ``<run_dir>/evaluation``).
    """
    run = finished_run(run_dir)
    cfg = run["config"]
    specs = specs_in_dir(cfg, test_dir) if test_dir is not None else split_specs(cfg)["test"]
    if not specs:
        raise DataError(f"{run_dir}: the config has no test split (data.split.test = 0); pass test_dir.")
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    ds = make_dataset(specs, batch_size=batch_size, transform=build_transform(cfg), epoch="all", shuffle=0,
                      drop_remainder=False)
    ds = model_inputs(model, ds, target=cfg["training"]["target"], per_pixel=True)
    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1, output_type=tf.int32),
                          reduce_retracing=True)
    n = len(class_names)
    cm = np.zeros((n, n), np.int64)
    for x, y in tqdm(ds, total=len(ds), desc=f"scoring {cfg['name']}", unit="batch"):
        truth, guess = y.numpy().ravel(), predict(x).numpy().ravel()
        keep = truth >= 0
        cm += confusion_matrix(truth[keep], guess[keep], n)
    classes = {name: {"pixels": int(cm[k].sum()), "accuracy": float(cm[k, k] / max(cm[k].sum(), 1)),
                      "purity": float(cm[k, k] / max(cm[:, k].sum(), 1))} for k, name in enumerate(class_names)}
    result = {"pixels": int(cm.sum()), "accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "classes": classes,
              "confusion": cm.tolist(), "class_names": list(class_names)}
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "confusion.png")
    _plot_confusion(cm, class_names, png)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    with writer.as_default():
        tf.summary.scalar("pixel_accuracy", result["accuracy"], step=0)
        for name, row in classes.items():
            tf.summary.scalar(f"{name}/accuracy", row["accuracy"], step=0)
        with open(png, "rb") as f:
            tf.summary.image("confusion", tf.io.decode_png(f.read(), channels=4)[None], step=0)
    writer.flush()
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(result, indent=1))
    return result


def format_segmentation(result: dict[str, Any]) -> str:
    """A table: per class the labelled pixels, accuracy and purity."""
    lines = [f"{result['pixels']:,} labelled test pixels, accuracy {100 * result['accuracy']:.1f} %",
             f"{'class':12s} {'pixels':>10s} {'accuracy':>9s} {'purity':>8s}"]
    for name, row in result["classes"].items():
        lines.append(f"{name:12s} {row['pixels']:10,d} {100 * row['accuracy']:8.1f}% {100 * row['purity']:7.1f}%")
    return "\n".join(lines)
