"""Pileup overlay for generated jets: the hard event mixed with ``N ~ Poisson(μ)`` minimum-bias events.

:func:`mixed_event` overlays events of a :class:`~hepflow.physics.minbias.MinBiasPool` on the hard
event's visible particles and reads the sum out through the detector: tracks know their vertex
(leading or pileup, as a tracker with vertexing resolves it), towers sum both. The event-level
quantities the pileup-mitigation methods need are summarized in a grid of patches
(:func:`event_patches`), stored with each jet, so that area–median subtraction and SoftKiller
run later as TF ops (:mod:`hepflow.ops.pileup`) on what a jet file holds.

Choices (recorded in each manifest):

* Patches: |η| < 2.5 (the tracker's acceptance, where charged pileup is removed by vertex) in
  10 × 12 cells of Δη × Δφ = 0.5 × 2π/12, near the size SoftKiller recommends (a ≈ 0.4–0.6).
  Per patch hepflow keeps the scalar pT sum and the highest pT of the *neutral* objects
  (towers), the inputs of ρ and of the SoftKiller cut after charged-hadron subtraction.
* Jet areas: FastJet active areas with ghosts of 0.01 up to |η| = 3.0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hepflow.physics.detector import simple_detector
from hepflow.physics.minbias import MinBiasPool

__all__ = ["PATCH_ETA_MAX", "PATCH_ETA_BINS", "PATCH_PHI_BINS", "PILEUP_SETTINGS", "event_patches", "mixed_event"]

PATCH_ETA_MAX = 2.5
PATCH_ETA_BINS = 10
PATCH_PHI_BINS = 12
GHOST_AREA = 0.01
GHOST_ETA_MAX = 3.0
#: What a pileup manifest records about the overlay and its event summaries.
PILEUP_SETTINGS = {"patch_eta_max": PATCH_ETA_MAX, "patch_eta_bins": PATCH_ETA_BINS,
                   "patch_phi_bins": PATCH_PHI_BINS, "ghost_area": GHOST_AREA, "ghost_eta_max": GHOST_ETA_MAX,
                   "pool_reuse": "random φ rotation and η reflection per drawn event"}


def mixed_event(hard: dict[str, np.ndarray], pool: MinBiasPool, mu: float, rng: np.random.Generator, *,
                tracker: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """The detector objects of the hard event plus ``N ~ Poisson(mu)`` pool events.

    Args:
        hard: The hard event's visible particles: ``px, py, pz, e, charge, pid``.
        pool: Where the pileup events come from.
        mu: Mean number of pileup collisions.
        rng: Draws N, the pool events and the detector response.
        tracker: As in :func:`~hepflow.physics.detector.simple_detector`.

    Returns:
        ``(objects, n_pileup)``: :func:`~hepflow.physics.detector.simple_detector` output with
        ``track_vertex`` and ``pileup_fraction``, and the number of pileup collisions drawn.
    """
    n_pu = int(rng.poisson(mu)) if mu > 0 else 0
    soft = pool.overlay(n_pu, rng)
    cat = {k: np.concatenate([np.asarray(hard[k]), soft[k]]) for k in ("px", "py", "pz", "e", "charge", "pid")}
    is_pu = np.concatenate([np.zeros(len(hard["e"]), bool), np.ones(len(soft["e"]), bool)])
    objs = simple_detector(cat["px"], cat["py"], cat["pz"], cat["e"], cat["charge"].astype(np.int8), cat["pid"], rng,
                           tracker=tracker, pileup=is_pu)
    return objs, n_pu


def event_patches(objs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Scalar pT sum and highest pT of the neutral objects in each patch of the event.

    Returns:
        ``(pt_sum, pt_max)``, each ``(PATCH_ETA_BINS * PATCH_PHI_BINS,)`` float32, patch
        ``i_eta * PATCH_PHI_BINS + i_phi``.
    """
    px, py, pz = (np.asarray(objs[k], np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    neutral = np.asarray(objs["charge"]) == 0
    inside = neutral & (np.abs(eta) < PATCH_ETA_MAX)
    ie = np.clip(((eta[inside] + PATCH_ETA_MAX) / (2 * PATCH_ETA_MAX) * PATCH_ETA_BINS).astype(np.int64), 0,
                 PATCH_ETA_BINS - 1)
    ip = np.clip(((phi[inside] + np.pi) / (2 * np.pi) * PATCH_PHI_BINS).astype(np.int64), 0, PATCH_PHI_BINS - 1)
    patch = ie * PATCH_PHI_BINS + ip
    n = PATCH_ETA_BINS * PATCH_PHI_BINS
    pt_sum = np.bincount(patch, weights=pt[inside], minlength=n)
    pt_max = np.zeros(n)
    np.maximum.at(pt_max, patch, pt[inside])
    return pt_sum.astype(np.float32), pt_max.astype(np.float32)
