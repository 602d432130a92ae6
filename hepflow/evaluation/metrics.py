"""Tagger metrics: ROC curves, AUC, background rejection 1/εB at fixed signal efficiency εS."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from hepflow.runs.scoring import threshold_at  # the working point is defined once, with scoring

__all__ = ["roc_curve", "auc", "auc_error", "rejection_at", "threshold_at"]


def _check(labels, scores):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same length. Received: {labels.shape}, {scores.shape}")
    if labels.all() or not labels.any():
        raise ValueError("ROC metrics need both signal (label 1) and background (label 0) examples.")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite. Received: NaN or Inf in scores")
    return labels, scores


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eff_s, eff_b, thresholds)``: efficiencies of ``score ≥ threshold`` for each distinct score."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp, fp = np.cumsum(lab)[last], np.cumsum(~lab)[last]
    return tp / lab.sum(), fp / (~lab).sum(), s[last]


def auc(labels, scores) -> float:
    """Area under the ROC curve: P(score_signal > score_background), ties counted half."""
    labels, scores = _check(labels, scores)
    ranks = rankdata(scores)
    n_s, n_b = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_s * (n_s + 1) / 2) / (n_s * n_b))


def auc_error(labels, scores) -> float:
    """The statistical error of :func:`auc` from the test sample's size (Hanley & McNeil, Radiology 143 (1982) 29).

    ``σ² = [A(1−A) + (n_S−1)(Q1−A²) + (n_B−1)(Q2−A²)] / (n_S n_B)`` with ``Q1 = A/(2−A)`` and
    ``Q2 = 2A²/(1+A)``: the spread of the AUC over independent test samples of the same size.
    """
    labels, scores = _check(labels, scores)
    a = auc(labels, scores)
    n_s, n_b = int(labels.sum()), int((~labels).sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_s - 1) * (q1 - a * a) + (n_b - 1) * (q2 - a * a)) / (n_s * n_b)
    return float(np.sqrt(max(var, 0.0)))


def rejection_at(labels, scores, efficiency: float = 0.3) -> tuple[float, float]:
    """Background rejection ``1/εB`` at signal efficiency ``efficiency``, with its statistical error.

    εB is counted at the threshold of :func:`threshold_at`; the error is binomial,
    ``σ(1/εB) = sqrt(εB (1 - εB) / N_B) / εB²``. With no background passing, the rejection
    is ``inf`` and the error ``nan``.
    """
    labels, scores = _check(labels, scores)
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1]. Received: efficiency={efficiency}")
    thr = threshold_at(labels, scores, efficiency)
    bkg = scores[~labels]
    eps_b = float((bkg >= thr).mean())
    if eps_b == 0:
        return float("inf"), float("nan")
    return 1.0 / eps_b, float(np.sqrt(eps_b * (1 - eps_b) / len(bkg)) / eps_b**2)
