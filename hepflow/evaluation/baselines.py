"""Baseline taggers: a mass-window + τ32 cut tagger and a BDT on high-level features."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CutBasedTagger", "bdt_tagger", "ROC_EFFICIENCIES"]

#: Target signal efficiencies at which the cut-based tagger's ROC (and its AUC) is sampled.
ROC_EFFICIENCIES = tuple(round(e, 2) for e in np.arange(0.05, 1.0, 0.05))


@dataclasses.dataclass
class CutBasedTagger:
    """Mass window and τ32 cut, optimised on the training set for each target signal efficiency.

    A jet passes ``m_lo ≤ mass < m_hi`` and ``τ32 < t``. The candidate cuts lie on a grid of
    ``grid + 1`` quantiles of the training signal's mass and τ32 (open-ended at both ends, so
    one-sided cuts are candidates too). For each target efficiency the cuts that keep at least
    that fraction of training signal with the least training background win. All candidates
    are counted at once from 2-D histograms, so fitting is fast even on millions of jets.

    Attributes:
        efficiencies: Target signal efficiencies whose cuts :meth:`fit` stores in ``cuts``.
        grid: Quantile bins per variable.
        cuts: efficiency → ``(m_lo, m_hi, tau32_max)`` after :meth:`fit`.
    """

    efficiencies: tuple[float, ...] = (0.3, 0.5)
    grid: int = 25
    cuts: dict = dataclasses.field(default_factory=dict)

    def fit(self, mass, tau32, labels) -> "CutBasedTagger":
        mass, tau32 = np.asarray(mass, np.float64), np.asarray(tau32, np.float64)
        sig = np.asarray(labels).astype(bool)
        if sig.all() or not sig.any():
            raise ValueError("CutBasedTagger.fit needs both signal (1) and background (0) jets.")
        qs = np.linspace(0, 1, self.grid + 1)[1:-1]
        m_edges = np.r_[-np.inf, np.unique(np.quantile(mass[sig], qs)), np.inf]
        t_edges = np.r_[-np.inf, np.unique(np.quantile(tau32[sig], qs)), np.inf]
        nm, nt = len(m_edges) - 1, len(t_edges) - 1
        mi = np.searchsorted(m_edges, mass, side="right") - 1
        ti = np.searchsorted(t_edges, tau32, side="right") - 1

        def passing(select):  # [a, b, j]: jets with mass bin in [a, b) and τ32 bin ≤ j
            h = np.bincount(mi[select] * nt + ti[select], minlength=nm * nt).reshape(nm, nt)
            prefix = np.vstack([np.zeros((1, nt)), np.cumsum(np.cumsum(h, axis=1), axis=0)])
            return prefix[None, :, :] - prefix[:, None, :]

        eff_s, eff_b = passing(sig) / sig.sum(), passing(~sig) / (~sig).sum()
        a, b, j = np.meshgrid(np.arange(nm + 1), np.arange(nm + 1), np.arange(nt), indexing="ij")
        valid = b > a
        self._candidates = (eff_s[valid], eff_b[valid], m_edges[a[valid]], m_edges[b[valid]], t_edges[j[valid] + 1])
        self.cuts = {eff: self.cuts_for(eff) for eff in self.efficiencies}
        return self

    def cuts_for(self, efficiency: float) -> tuple[float, float, float]:
        """The fitted ``(m_lo, m_hi, tau32_max)`` with the least background at ≥ ``efficiency`` signal."""
        eff_s, eff_b, lo, hi, t = self._candidates
        ok = np.flatnonzero(eff_s >= efficiency)
        if not len(ok):
            raise ValueError(f"No cut reaches signal efficiency {efficiency} on the training set.")
        best = ok[np.lexsort((eff_s[ok], eff_b[ok]))[0]]  # least background, then least signal
        return float(lo[best]), float(hi[best]), float(t[best])

    def passes(self, mass, tau32, efficiency: float) -> np.ndarray:
        lo, hi, t = self.cuts[efficiency] if efficiency in self.cuts else self.cuts_for(efficiency)
        mass, tau32 = np.asarray(mass), np.asarray(tau32)
        return (mass >= lo) & (mass < hi) & (tau32 < t)

    def working_points(self, mass, tau32, labels, efficiencies=None) -> dict[float, tuple[float, float]]:
        """target efficiency → (εS, εB) measured on the given (test) data.

        Args:
            efficiencies: Targets; default the fitted ``efficiencies``. Pass
                ``ROC_EFFICIENCIES`` (plus your own) to sample the tagger's ROC curve.
        """
        sig = np.asarray(labels).astype(bool)
        out = {}
        for eff in sorted(set(efficiencies or self.cuts)):
            keep = self.passes(mass, tau32, eff)
            out[eff] = (float(keep[sig].mean()), float(keep[~sig].mean()))
        return out


def bdt_tagger(features_train: np.ndarray, labels_train: np.ndarray, *, max_iter: int = 200,
               learning_rate: float = 0.1, seed: int = 0):
    """A gradient-boosted decision tree (scikit-learn's HistGradientBoostingClassifier), fitted.

    Use ``model.predict_proba(features)[:, 1]`` as the score (a column per class for K classes).
    Early stopping holds out 10 % of the jets; on samples too small for that split to hold every
    class, the BDT runs its ``max_iter`` iterations instead, and its leaves may hold fewer than
    scikit-learn's default 20 jets (a quarter of the smallest class at most), so that it can split at all.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier  # start-up: ~1 s, only when a BDT is fitted

    labels = np.asarray(labels_train).astype(int)
    counts = np.unique(labels, return_counts=True)[1]
    early = int(np.ceil(0.1 * len(labels))) >= len(counts)
    model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate, early_stopping=early,
                                           min_samples_leaf=int(np.clip(counts.min() // 4, 1, 20)), random_state=seed)
    return model.fit(np.asarray(features_train), labels)
