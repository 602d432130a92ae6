"""A simple parametrized detector response for generated jets (``detector="simple"``).

The top-tagging reference data are detector-level (Delphes, ATLAS-like). hepflow's
simple detector gives generated data that resemble them rather than perfect truth:

* Tracker: charged particles with pT > 0.5 GeV and |η| < 2.5 become tracks. Their
  momentum is smeared with σ(pT)/pT = 0.5 % ⊕ 0.02 %·pT/GeV (directions and
  masses kept). Electrons and muons keep their type.
* Calorimeter: everything else that is visible (photons, neutral hadrons, charged
  particles outside the tracker) deposits energy in towers of Δη × Δφ = 0.05 × 0.05
  (2π/126 in φ), |η| < 5. The ECAL collects photons and electrons with
  σ(E)/E = 10 %/√E ⊕ 1 %; the HCAL collects hadrons with σ(E)/E = 50 %/√E ⊕ 3 %.
  A tower with E > 0.5 GeV after smearing becomes a massless constituent at the
  tower centre. It is a photon if its ECAL energy dominates, otherwise a neutral hadron.
* Muons outside the tracker and neutrinos leave nothing.

The numbers are typical of LHC general-purpose detectors (e.g. the ATLAS and CMS
Delphes cards); they are choices, documented here and recorded in each manifest.

``detector="calo"`` is the same calorimeter without the tracker: charged hadrons shower in
the HCAL and electrons in the ECAL, so every constituent is a tower. That is the view of
the top-tagging reference dataset and of the DeepTop study's jet images (calorimeter
towers only); the jet mass and substructure are then measured with the HCAL resolution.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DETECTORS", "detector_settings", "TYPE_NONE", "TYPE_PHOTON", "TYPE_NEUTRAL_HADRON", "TYPE_CHARGED_HADRON", "TYPE_ELECTRON",
           "TYPE_MUON", "particle_types", "simple_detector", "DETECTOR_SETTINGS"]

TYPE_NONE, TYPE_PHOTON, TYPE_NEUTRAL_HADRON, TYPE_CHARGED_HADRON, TYPE_ELECTRON, TYPE_MUON = range(6)

DETECTOR_SETTINGS = {
    "track_pt_min_gev": 0.5, "track_eta_max": 2.5, "track_resolution": [0.005, 0.0002],
    "tower_deta": 0.05, "tower_nphi": 126, "calo_eta_max": 5.0,
    "ecal_resolution": [0.10, 0.01], "hcal_resolution": [0.50, 0.03], "tower_e_min_gev": 0.5,
}


#: Detector responses of the jet generators: tracks + towers, towers only, stable particles.
DETECTORS = ("simple", "calo", "none")


def detector_settings(detector: str) -> dict | None:
    """The settings a detector response uses (recorded in manifests); None for ``"none"``."""
    if detector == "none":
        return None
    if detector == "calo":
        return {**DETECTOR_SETTINGS, "track_pt_min_gev": None, "track_eta_max": 0.0, "track_resolution": None}
    return dict(DETECTOR_SETTINGS)


def particle_types(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Constituent type codes from PDG ids and charges."""
    apid = np.abs(pid)
    t = np.where(charge != 0, TYPE_CHARGED_HADRON, TYPE_NEUTRAL_HADRON)
    t = np.where(apid == 22, TYPE_PHOTON, t)
    t = np.where(apid == 11, TYPE_ELECTRON, t)
    t = np.where(apid == 13, TYPE_MUON, t)
    return t.astype(np.int8)


def simple_detector(px, py, pz, e, charge, pid, rng: np.random.Generator, *, tracker: bool = True,
                    pileup: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Applies the response to one event's visible final-state particles (GeV).

    Args:
        tracker: False for the calorimeter-only response (``detector="calo"``): no
            particle becomes a track, charged hadrons deposit in the HCAL.
        pileup: Optional per-particle bool, True for particles of pileup collisions. Tracks
            then carry the vertex they point to, as a tracker resolves it; towers cannot tell.

    Returns:
        Arrays ``px, py, pz, e, charge, type`` of the reconstructed objects; with ``pileup``
        also ``track_vertex`` (int8: 0 leading vertex, 1 pileup vertex, -1 a tower) and
        ``pileup_fraction`` (float32, truth: the share of the object's energy, before
        smearing, that came from pileup).
    """
    s = DETECTOR_SETTINGS
    pt = np.hypot(px, py)
    p = np.sqrt(px**2 + py**2 + pz**2)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    types = particle_types(pid, charge)
    tracked = (charge != 0) & (pt > s["track_pt_min_gev"]) & (np.abs(eta) < s["track_eta_max"]) & tracker
    # tracks: smear |p| by the pT resolution, keep direction and mass
    a, b = s["track_resolution"]
    scale = 1.0 + rng.normal(0, 1, tracked.sum()) * np.hypot(a, b * pt[tracked])
    scale = np.clip(scale, 0.05, None)
    mass2 = np.maximum(e[tracked] ** 2 - p[tracked] ** 2, 0.0)
    tpx, tpy, tpz = px[tracked] * scale, py[tracked] * scale, pz[tracked] * scale
    te = np.sqrt(tpx**2 + tpy**2 + tpz**2 + mass2)
    # calorimeter: everything visible that was not tracked, except muons
    calo = ~tracked & (types != TYPE_MUON) & (np.abs(eta) < s["calo_eta_max"])
    em = calo & ((types == TYPE_PHOTON) | (types == TYPE_ELECTRON))
    deta, nphi = s["tower_deta"], s["tower_nphi"]
    ieta = np.floor(eta / deta).astype(np.int64)
    iphi = np.floor((phi + np.pi) / (2 * np.pi) * nphi).astype(np.int64) % nphi
    cell = ieta * nphi + iphi
    smeared = []
    for mask, (sa, sc) in ((em, s["ecal_resolution"]), (calo & ~em, s["hcal_resolution"])):
        cells, inv = np.unique(cell[mask], return_inverse=True)
        energy = np.bincount(inv, weights=e[mask], minlength=len(cells))
        sigma = energy * np.hypot(sa / np.sqrt(np.maximum(energy, 1e-9)), sc)
        smeared.append((cells, np.maximum(energy + rng.normal(0, 1, len(cells)) * sigma, 0.0)))
    cells = np.union1d(smeared[0][0], smeared[1][0])
    e_em, e_had = np.zeros(len(cells)), np.zeros(len(cells))
    e_em[np.searchsorted(cells, smeared[0][0])] = smeared[0][1]
    e_had[np.searchsorted(cells, smeared[1][0])] = smeared[1][1]
    e_tow = e_em + e_had
    keep = e_tow > s["tower_e_min_gev"]
    c = cells.astype(np.int64)[keep]
    e_tow, e_em, e_had = e_tow[keep], e_em[keep], e_had[keep]
    ceta = (np.floor_divide(c, nphi) + 0.5) * deta
    cphi = (np.mod(c, nphi) + 0.5) / nphi * 2 * np.pi - np.pi
    cpt = e_tow / np.cosh(ceta)
    out = {
        "px": np.concatenate([tpx, cpt * np.cos(cphi)]),
        "py": np.concatenate([tpy, cpt * np.sin(cphi)]),
        "pz": np.concatenate([tpz, cpt * np.sinh(ceta)]),
        "e": np.concatenate([te, e_tow]),
        "charge": np.concatenate([charge[tracked], np.zeros(len(e_tow))]).astype(np.int8),
        "type": np.concatenate([types[tracked],
                                np.where(e_em >= e_had, TYPE_PHOTON, TYPE_NEUTRAL_HADRON)]).astype(np.int8),
    }
    if pileup is not None:
        pileup = np.asarray(pileup, bool)
        calo_cells, inv = np.unique(cell[calo], return_inverse=True)
        at = np.searchsorted(calo_cells, c)  # every kept tower is a cell with deposits
        tower_pu = np.bincount(inv, weights=e[calo] * pileup[calo])[at] / np.bincount(inv, weights=e[calo])[at]
        track_pu = pileup[tracked]
        out["track_vertex"] = np.concatenate([track_pu.astype(np.int8), np.full(len(e_tow), -1, np.int8)])
        out["pileup_fraction"] = np.concatenate([track_pu, tower_pu]).astype(np.float32)
    return out
