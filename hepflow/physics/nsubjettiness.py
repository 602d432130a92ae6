"""N-subjettiness (Thaler & Van Tilburg, arXiv:1011.2268) with exclusive-kT axes.

``τ_N = Σ_i pT_i · min_k ΔR(i, axis_k)^β / Σ_i pT_i R0`` with β = 1. The axes are the
N exclusive jets of the constituents reclustered with the kT algorithm. The ``fastjet``
PyPI package has no binding for FastJet contrib's Nsubjettiness, so hepflow computes it here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["delta_r", "tau_n", "nsubjettiness"]


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """ΔR with Δφ wrapped into (-π, π]; broadcasts."""
    dphi = np.mod(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def tau_n(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, axes_eta: np.ndarray, axes_phi: np.ndarray,
          *, r0: float = 0.8, beta: float = 1.0) -> float:
    """τ_N of one jet given its constituents (pT in GeV, η, φ in radians) and N axes."""
    if len(pt) == 0 or len(axes_eta) == 0:
        return 0.0
    dr = delta_r(eta[:, None], phi[:, None], axes_eta[None, :], axes_phi[None, :])
    return float((pt * dr.min(axis=1) ** beta).sum() / (pt.sum() * r0 ** beta))


def nsubjettiness(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray, *, n_max: int = 3,
                  r0: float = 0.8) -> np.ndarray:
    """``[τ_1, ..., τ_n_max]`` (β = 1, exclusive-kT axes) of one jet's constituents (GeV).

    With fewer constituents than N, τ_N is 0 (every constituent is its own axis).
    """
    import fastjet  # optional extra [pythia]

    pt = np.hypot(px, py)
    keep = pt > 0
    px, py, pz, e, pt = px[keep], py[keep], pz[keep], e[keep], pt[keep]
    p = np.sqrt(px**2 + py**2 + pz**2)
    eta = np.arctanh(np.clip(pz / np.maximum(p, 1e-12), -1 + 1e-12, 1 - 1e-12))
    phi = np.arctan2(py, px)
    particles = [fastjet.PseudoJet(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(px, py, pz, e)]
    cs = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.kt_algorithm, 1.5))
    out = np.zeros(n_max)
    for n in range(1, n_max + 1):
        if len(particles) <= n:
            break
        axes = cs.exclusive_jets(n)
        out[n - 1] = tau_n(pt, eta, phi, np.array([a.eta() for a in axes]),
                           np.array([a.phi_std() for a in axes]), r0=r0)
    return out
