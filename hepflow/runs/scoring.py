"""Scoring a run's model on sample specs: every row once, matched by record id."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from hepflow.data import RECORD_ID, SampleSpec, make_dataset
from hepflow.runs.inputs import model_inputs

__all__ = ["score_specs", "sort_by_record", "threshold_at"]


def sort_by_record(ids: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """``[ids, *arrays]`` reordered by record id (sample, file, row)."""
    order = np.lexsort(ids.T[::-1])
    return [ids[order]] + [a[order] for a in arrays]


def score_specs(model, specs: Sequence[SampleSpec], *, transform=None, batch_size: int = 1024,
                progress: bool = True, desc: str = "scoring", all_classes: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores every row of ``specs`` once with a Keras model through the pipeline.

    Returns:
        ``(record_ids (n, 3), labels (n,), scores (n,))`` sorted by record id. For a softmax
        model the score is the probability of class 1 (every class's, ``(n, classes)``, with
        ``all_classes``); for a model with a ``score`` method (the anomaly models) it is what
        that method returns.
    """
    ds = make_dataset(specs, batch_size=batch_size, transform=transform, epoch="all", shuffle=0,
                      drop_remainder=False, with_record_id=True)
    ds = model_inputs(model, ds.map(lambda x, y: (x, y, x[RECORD_ID])))
    if hasattr(model, "score"):  # anomaly models: their own score (e.g. the reconstruction error)
        predict = tf.function(lambda x: model.score(x), reduce_retracing=True)
    else:
        predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    ids, labels, scores = [], [], []
    for x, y, rid in tqdm(ds, total=len(ds), desc=desc, unit="batch", disable=not progress):
        out = np.asarray(predict(x))
        scores.append(out if out.ndim == 1 or all_classes else out[:, 0] if out.shape[-1] == 1 else out[:, 1])
        ids.append(rid.numpy())
        labels.append(y.numpy())
    return tuple(sort_by_record(np.concatenate(ids), np.concatenate(labels), np.concatenate(scores)))


def threshold_at(labels, scores, efficiency: float) -> float:
    """The score threshold whose signal efficiency is closest to (and at least) ``efficiency``.

    The working point of a tagger: evaluation counts the background above it, serving stores
    it with an export.

    Raises:
        ValueError: no signal (label 1) among ``labels``, or lengths that differ.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape or not labels.any():
        raise ValueError(f"threshold_at needs as many scores as labels and some signal (label 1). "
                         f"Received: {labels.shape} labels ({int(labels.sum())} signal), {scores.shape} scores")
    sig = np.sort(scores[labels])[::-1]
    k = max(1, int(np.ceil(efficiency * len(sig))))
    return float(sig[k - 1])
