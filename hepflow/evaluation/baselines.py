"""Baseline taggers: a mass-window + τ32 cut tagger and a BDT on high-level features."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CutBasedTagger", "bdt_tagger"]


@dataclasses.dataclass
class CutBasedTagger:
    """Mass window and τ32 cut, optimised on the training set for each target signal efficiency.

    For each efficiency, the cuts ``m_lo < mass < m_hi`` and ``τ32 < t`` that keep at least
    that fraction of signal with the least background are found by a grid search over
    quantiles of the training distributions.

    Attributes:
        cuts: efficiency → ``(m_lo, m_hi, tau32_max)`` after :meth:`fit`.
    """

    efficiencies: tuple[float, ...] = (0.3, 0.5)
    grid: int = 25
    cuts: dict = dataclasses.field(default_factory=dict)

    def fit(self, mass, tau32, labels) -> "CutBasedTagger":
        mass, tau32 = np.asarray(mass, np.float64), np.asarray(tau32, np.float64)
        sig = np.asarray(labels).astype(bool)
        qs = np.linspace(0, 1, self.grid + 1)
        m_edges = np.quantile(mass[sig], qs)
        t_edges = np.quantile(tau32[sig], qs[1:])
        for eff in self.efficiencies:
            best = None
            for i, lo in enumerate(m_edges[:-1]):
                for hi in m_edges[i + 1:]:
                    in_window = (mass > lo) & (mass < hi)
                    for t in t_edges:
                        keep = in_window & (tau32 < t)
                        eff_s = keep[sig].mean()
                        if eff_s < eff:
                            continue
                        eff_b = keep[~sig].mean()
                        if best is None or eff_b < best[0] or (eff_b == best[0] and eff_s < best[1]):
                            best = (eff_b, eff_s, (float(lo), float(hi), float(t)))
                        break  # a looser τ32 cut only adds background
            if best is None:
                raise ValueError(f"No cut reaches signal efficiency {eff} on the training set.")
            self.cuts[eff] = best[2]
        return self

    def passes(self, mass, tau32, efficiency: float) -> np.ndarray:
        lo, hi, t = self.cuts[efficiency]
        mass, tau32 = np.asarray(mass), np.asarray(tau32)
        return (mass > lo) & (mass < hi) & (tau32 < t)

    def working_points(self, mass, tau32, labels) -> dict[float, tuple[float, float]]:
        """efficiency → (εS, εB) measured on the given (test) data."""
        sig = np.asarray(labels).astype(bool)
        out = {}
        for eff in self.cuts:
            keep = self.passes(mass, tau32, eff)
            out[eff] = (float(keep[sig].mean()), float(keep[~sig].mean()))
        return out


def bdt_tagger(features_train: np.ndarray, labels_train: np.ndarray, *, max_iter: int = 200,
               learning_rate: float = 0.1, seed: int = 0):
    """A gradient-boosted decision tree (scikit-learn's HistGradientBoostingClassifier), fitted.

    Use ``model.predict_proba(features)[:, 1]`` as the score.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                           early_stopping=True, random_state=seed)
    return model.fit(np.asarray(features_train), np.asarray(labels_train).astype(int))
