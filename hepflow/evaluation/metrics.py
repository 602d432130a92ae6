"""Tagger metrics: ROC curves, AUC, background rejection 1/εB at fixed signal efficiency εS."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from hepflow.runs.scoring import threshold_at  # the working point is defined once, with scoring

__all__ = ["roc_curve", "auc", "auc_error", "rejection_at", "threshold_at", "paired_bootstrap"]


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


def _auc_sorted(sig: np.ndarray, bkg_sorted: np.ndarray) -> float:
    """AUC of signal scores against sorted background scores (ties count half)."""
    below = np.searchsorted(bkg_sorted, sig, side="left")
    upto = np.searchsorted(bkg_sorted, sig, side="right")
    return float((below.sum() + 0.5 * (upto - below).sum()) / (len(sig) * len(bkg_sorted)))


def _rejection_sorted(sig_desc: np.ndarray, bkg_sorted: np.ndarray, efficiency: float) -> float:
    """1/εB at the threshold of :func:`threshold_at` (``inf`` when no background passes)."""
    thr = sig_desc[max(1, int(np.ceil(efficiency * len(sig_desc)))) - 1]
    passed = len(bkg_sorted) - np.searchsorted(bkg_sorted, thr, side="left")
    return len(bkg_sorted) / passed if passed else float("inf")


def paired_bootstrap(labels, scores_a, scores_b, *, efficiencies=(0.3, 0.5), resamples: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """Compares two taggers scored on the same test jets by resampling those jets.

    Each resample draws the signal and the background jets with replacement (the class counts
    stay fixed) and scores both taggers on the same draw, so what the two share — the test
    jets — cancels in their difference. The errors of :func:`auc_error` and
    :func:`rejection_at` describe each tagger alone and overstate the error of a difference.

    Args:
        labels: ``(n,)`` 1 for signal, 0 for background.
        scores_a, scores_b: ``(n,)`` scores of the two taggers on the same jets, in the same order.
        efficiencies: Signal efficiencies of the rejections compared.
        resamples: Bootstrap resamples. Default 1000.
        seed: Seed of the resampling. Default 0.

    Returns:
        ``"auc"`` and ``"rejection_at_<ε>"`` → ``{"difference": a − b on the test jets,
        "error": standard deviation of a − b over the resamples (those where both rejections are
        finite), "ahead": fraction of resamples in which a is ahead (ties count half)}``.
    """
    labels, a = _check(labels, scores_a)
    _, b = _check(labels, scores_b)
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2. Received: {resamples}")
    sig_idx, bkg_idx = np.flatnonzero(labels), np.flatnonzero(~labels)
    rng = np.random.default_rng(seed)
    keys = ["auc"] + [f"rejection_at_{e}" for e in efficiencies]

    def metrics(si, bi):
        out = {}
        for name, s in (("a", a), ("b", b)):
            sig, bkg = s[si], np.sort(s[bi])
            out[name] = [_auc_sorted(sig, bkg)] + [_rejection_sorted(np.sort(sig)[::-1], bkg, e) for e in efficiencies]
        return np.array(out["a"]), np.array(out["b"])

    full_a, full_b = metrics(sig_idx, bkg_idx)
    draws_a, draws_b = [], []
    for _ in range(resamples):
        ma, mb = metrics(rng.choice(sig_idx, len(sig_idx)), rng.choice(bkg_idx, len(bkg_idx)))
        draws_a.append(ma)
        draws_b.append(mb)
    da, db = np.array(draws_a), np.array(draws_b)
    result = {}
    for k, key in enumerate(keys):
        finite = np.isfinite(da[:, k]) & np.isfinite(db[:, k])
        diff = da[finite, k] - db[finite, k]
        with np.errstate(invalid="ignore"):
            difference = full_a[k] - full_b[k]
        result[key] = {"difference": float(difference),
                       "error": float(diff.std(ddof=1)) if len(diff) > 1 else float("nan"),
                       "ahead": float(np.mean((da[:, k] > db[:, k]) + 0.5 * (da[:, k] == db[:, k])))}
    return result
