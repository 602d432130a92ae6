"""Reconstruction against truth: hit efficiency and purity, charge per wire, noise reduction.

Definitions (per plane, numpy):

* A **true hit** is a run of consecutive ticks on one wire where the arriving charge (the
  simulation's truth) exceeds ``threshold`` electrons per tick; its charge is the run's sum.
* A true hit is **found** when a reconstructed hit on the same wire has its time inside the run,
  widened by ``tolerance`` ticks on each side. **Efficiency**: found / true hits with at least
  ``min_charge`` electrons. **Purity**: reconstructed hits inside some true run (widened
  likewise) / reconstructed hits.
* **Charge per wire**: the deconvolved charge summed over each wire / the true charge on that
  wire, for wires with at least ``min_charge`` true electrons; bias is the median ratio − 1,
  resolution half the 16-84 % spread.
"""
from __future__ import annotations

import numpy as np

__all__ = ["true_hits", "hit_efficiency", "charge_per_wire", "noise_rms"]


def true_hits(charge: np.ndarray, *, threshold: float) -> dict[str, np.ndarray]:
    """Runs of ticks above ``threshold`` on each wire of one plane ``(wires, ticks)``.

    Returns:
        ``wire``, ``start``, ``stop`` (exclusive), ``charge`` (sum over the run) per true hit.
    """
    above = charge > threshold
    padded = np.pad(above, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    wires_s, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    cum = np.pad(np.cumsum(charge, axis=1), ((0, 0), (1, 0)))
    return {"wire": wires_s, "start": starts, "stop": stops, "charge": cum[wires_s, stops] - cum[wires_s, starts]}


def hit_efficiency(charge: np.ndarray, hit_wire: np.ndarray, hit_time: np.ndarray, *, threshold: float = 300.0,
                   min_charge: float = 3000.0, tolerance: float = 3.0) -> dict[str, float]:
    """Efficiency and purity of reconstructed hits ``(wire, time)`` against one plane's truth.

    Args:
        charge: ``(wires, ticks)`` true arriving electrons.
        hit_wire, hit_time: The reconstructed hits of the same plane.
        threshold: Electrons per tick that start a true hit. Default 300.
        min_charge: Electrons a true hit needs to count for the efficiency (3000 ≈ a fifth of a
            minimum-ionizing particle's charge on one wire). Default 3000.
        tolerance: Ticks a hit may lie outside the run. Default 3.

    Returns:
        ``efficiency``, ``purity``, ``true_hits`` (counted), ``found``, ``reco_hits``, ``pure``.
    """
    truth = true_hits(charge, threshold=threshold)
    counted = truth["charge"] >= min_charge
    found = np.zeros(len(truth["wire"]), bool)
    pure = np.zeros(len(hit_wire), bool)
    by_wire: dict[int, list[int]] = {}
    for k, w in enumerate(truth["wire"]):
        by_wire.setdefault(int(w), []).append(k)
    for j, (w, t) in enumerate(zip(hit_wire.astype(int), hit_time)):
        for k in by_wire.get(int(w), ()):
            if truth["start"][k] - tolerance <= t < truth["stop"][k] + tolerance:
                found[k] = True
                pure[j] = True
    n_true, n_reco = int(counted.sum()), len(hit_wire)
    return {"efficiency": float(found[counted].mean()) if n_true else float("nan"),
            "purity": float(pure.mean()) if n_reco else float("nan"),
            "true_hits": n_true, "found": int(found[counted].sum()), "reco_hits": n_reco, "pure": int(pure.sum())}


def charge_per_wire(true_charge: np.ndarray, reco_charge: np.ndarray, *, min_charge: float = 3000.0
                    ) -> dict[str, float]:
    """Bias and resolution of the reconstructed charge per wire (``(wires, ticks)`` each, or stacks)."""
    t = true_charge.reshape(-1, true_charge.shape[-1]).sum(-1)
    r = reco_charge.reshape(-1, reco_charge.shape[-1]).sum(-1)
    keep = t >= min_charge
    if not keep.any():
        return {"wires": 0, "bias": float("nan"), "resolution": float("nan")}
    ratio = r[keep] / t[keep]
    lo, med, hi = np.percentile(ratio, [16, 50, 84])
    return {"wires": int(keep.sum()), "bias": float(med - 1), "resolution": float((hi - lo) / 2)}


def noise_rms(waveforms: np.ndarray, true_charge: np.ndarray) -> float:
    """RMS of the samples on wires that carry no true charge (``(..., wires, ticks)`` each)."""
    quiet = true_charge.sum(-1) == 0
    return float(np.sqrt(np.mean(np.square(waveforms[quiet])))) if quiet.any() else float("nan")
