"""Jets from Pythia 8 + FastJet: hadronic tt̄ and RPV gluinos (signals) and QCD dijets (background).

Mirrors the community top-tagging reference dataset (Kasieczka et al., SciPost Phys. 7, 014
(2019)): 14 TeV, anti-kT R = 0.8 jets with 550 < pT < 650 GeV and |η| < 2, the 200
leading constituents as (E, px, py, pz). Signal jets are truth-matched: the top, its b
and both quarks of its W decay lie within ΔR < 0.8 of the jet axis.

The ``gluino`` process is the anomaly-detection signal of the autoencoder study (Farina,
Nakai, Shih, arXiv:1808.08992): pair-produced gluinos of ``gluino_mass_gev`` (400 GeV) that
decay through R-parity violation to three light quarks (g̃ → uds or its conjugate), a
three-prong jet without the W inside a top. Pythia reads the spectrum from an SLHA file
hepflow writes (every other sparticle at 5 TeV); a gluino jet is kept when the gluino and
its three quarks lie within ``match_r`` of the jet axis. A 400 GeV three-prong decay fits in
an R = 0.8 jet only above pT ≈ 2m/R ≈ 1 TeV, so the anomaly data use wider jets at higher
pT (:data:`ANOMALY_SETTINGS`).

Needs the ``[pythia]`` extra (``pythia8mc``, ``fastjet``).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import tempfile
import time
from typing import Any

import numpy as np

from hepflow.data.formats import write_reference
from hepflow.errors import ConfigError
from hepflow.io import write_atomic, write_json_atomic
from hepflow.physics.chunks import chunk_plan, generate_chunks, write_native_chunk, write_sidecar
from hepflow.physics.detector import DETECTORS, detector_settings, particle_types, simple_detector
from hepflow.physics.jet_trees import TREE_ALGORITHMS, jet_tree_arrays
from hepflow.physics.minbias import load_pool
from hepflow.physics.pileup import GHOST_AREA, GHOST_ETA_MAX, PILEUP_SETTINGS, event_patches, mixed_event
from hepflow.physics.nsubjettiness import delta_r, nsubjettiness

__all__ = ["ANOMALY_SETTINGS", "JetSettings", "PROCESSES", "chunk_jobs", "generate_chunk", "generate_jets",
           "generate_top_tagging", "require_pythia", "top_tagging_counts"]

N_CONSTITUENTS = 200
#: Constituents kept of a jet clustered with pileup (at μ = 140 an R = 0.8 jet has 300–450).
PILEUP_CONSTITUENTS = 512
#: process name → label stored in the files. quark and gluon: the jet recoiling against a Z → νν
#: (qg → Zq and qq̄ → Zg), matched to the hard parton; w and z: hadronic W and Z bosons recoiling
#: against a jet (qq̄ → Vg, qg → Vq), matched to the boson and both its quarks.
PROCESSES = {"qcd": 0, "top": 1, "gluino": 2, "quark": 3, "gluon": 4, "w": 5, "z": 6}


def require_pythia():
    """Imports ``pythia8mc`` and ``fastjet`` or raises an ImportError naming the extra."""
    try:
        import fastjet  # noqa: F401 -- optional extra [pythia]
        import pythia8mc  # optional extra [pythia]
    except ImportError as e:
        raise ImportError(
            "Generating jets needs Pythia 8 and FastJet: pip install -e '.[pythia]' "
            f"(pythia8mc==8.317.2, fastjet). Missing: {e.name}"
        ) from None
    return pythia8mc


@dataclasses.dataclass(frozen=True)
class JetSettings:
    """Generator and selection settings (recorded in every file and the manifest).

    Attributes:
        ecm_gev: Centre-of-mass energy.
        pthat_min_gev, pthat_max_gev: Hard-process pT window, around the jet window
            (ISR/FSR move jets by tens of GeV).
        jet_r: Anti-kT radius.
        pt_min_gev, pt_max_gev, eta_max: Jet selection.
        match_r: Truth-matching radius for top jets.
        detector: ``"simple"`` (tracks + towers, see :mod:`hepflow.physics.detector`),
            ``"calo"`` (towers only, like the reference dataset) or ``"none"`` (stable
            visible particles).
        mpi: Multi-parton interactions (``PartonLevel:MPI``); off is ~30 % faster.
        hadronization: ``HadronLevel:all``; off leaves partons as constituents (unphysical,
            for fast tests of the pipeline only).
        trees: Also store each jet's clustering trees and C/A Lund features
            (:mod:`hepflow.physics.jet_trees`; about 2 ms per jet).
        pileup_mu: ``None``: no pileup. A number μ ≥ 0: each selected event is overlaid with
            ``N ~ Poisson(μ)`` events of the minimum-bias pool ``minbias_pool``
            (:mod:`hepflow.physics.pileup`). Jets are selected and truth-matched without pileup,
            so a seed gives the same jets at every μ; the file's ``constituents``, ``pt``,
            ``mass``, ... are then those of the jet clustered on the mixed event (the anti-kT jet
            nearest the pileup-free one), and the pileup-free jet is kept as ``nopu_*``.
        minbias_pool: Folder of :func:`hepflow.physics.minbias.generate_minbias` (with ``pileup_mu``).
    """

    ecm_gev: float = 14_000.0
    pthat_min_gev: float = 500.0
    pthat_max_gev: float = 750.0
    jet_r: float = 0.8
    pt_min_gev: float = 550.0
    pt_max_gev: float = 650.0
    eta_max: float = 2.0
    match_r: float = 0.8
    detector: str = "simple"
    mpi: bool = True
    hadronization: bool = True
    gluino_mass_gev: float = 400.0
    trees: bool = False
    pileup_mu: float | None = None
    minbias_pool: str | None = None

    def __post_init__(self) -> None:
        if self.pileup_mu is not None and not (self.pileup_mu >= 0 and self.minbias_pool):
            raise ConfigError("pileup needs pileup_mu ≥ 0 and a minbias_pool folder. "
                              f"Received: pileup_mu={self.pileup_mu}, minbias_pool={self.minbias_pool!r}")
        if self.pileup_mu is not None and self.trees:
            raise ConfigError("trees are stored for pileup-free jets only: leave trees off with pileup_mu. "
                              f"Received: pileup_mu={self.pileup_mu}, trees=True")
        if self.detector not in DETECTORS:
            raise ConfigError(f"detector must be one of {DETECTORS}. Received: detector={self.detector!r}")
        if not (self.pt_min_gev < self.pt_max_gev and self.pthat_min_gev < self.pthat_max_gev and self.jet_r > 0):
            raise ConfigError("JetSettings need pt_min_gev < pt_max_gev, pthat_min_gev < pthat_max_gev and jet_r > 0. "
                                 f"Received: pt=({self.pt_min_gev}, {self.pt_max_gev}), "
                                 f"pthat=({self.pthat_min_gev}, {self.pthat_max_gev}), jet_r={self.jet_r}")

    def pythia_strings(self, process: str, seed: int) -> list[str]:
        common = [f"Beams:eCM = {self.ecm_gev}", f"PhaseSpace:pTHatMin = {self.pthat_min_gev}",
                  f"PhaseSpace:pTHatMax = {self.pthat_max_gev}", "Random:setSeed = on",
                  f"Random:seed = {seed}", "Print:quiet = on", "Next:numberCount = 0",
                  "Next:numberShowEvent = 0", "Next:numberShowInfo = 0", "Next:numberShowProcess = 0",
                  f"PartonLevel:MPI = {'on' if self.mpi else 'off'}",
                  f"HadronLevel:all = {'on' if self.hadronization else 'off'}"]
        if process == "top":  # tt̄ with both W → q q̄'
            return common + ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off",
                             "24:onIfAny = 1 2 3 4 5"]
        if process == "qcd":
            return common + ["HardQCD:all = on"]
        if process in ("w", "z"):
            boson, zmode = ("24", []) if process == "w" else ("23", ["WeakZ0:gmZmode = 2"])
            wz = "W" if process == "w" else "gmZ"
            return common + zmode + [f"WeakBosonAndParton:qqbar2{wz}g = on", f"WeakBosonAndParton:qg2{wz}q = on",
                                     f"{boson}:onMode = off", f"{boson}:onIfAny = 1 2 3 4 5"]
        if process in ("quark", "gluon"):  # the parton recoiling against Z → νν
            hard = "qg2gmZq" if process == "quark" else "qqbar2gmZg"
            return common + ["WeakZ0:gmZmode = 2", f"WeakBosonAndParton:{hard} = on", "23:onMode = off",
                             "23:onIfAny = 12 14 16"]
        if process == "gluino":  # g̃ g̃ pairs, g̃ → uds through the SLHA decay table
            return common + ["SUSY:gg2gluinogluino = on", "SUSY:qqbar2gluinogluino = on",
                             f"SLHA:file = {gluino_slha(self.gluino_mass_gev)}", "SLHA:useDecayTable = on",
                             "SLHA:verbose = 0"]
        raise ConfigError(f"process must be one of {sorted(PROCESSES)}. Received: process={process!r}")


#: Jets for the anomaly-detection studies: R = 1.0 jets at 800 < pT < 1000 GeV contain the
#: three quarks of a 400 GeV gluino (and of a top); QCD, top and gluino share these settings.
ANOMALY_SETTINGS = JetSettings(pthat_min_gev=700.0, pthat_max_gev=1100.0, jet_r=1.0, pt_min_gev=800.0,
                               pt_max_gev=1000.0, match_r=1.0)

_HEAVY_SPARTICLES = (1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 2000001, 2000002, 2000003, 2000004,
                     2000005, 2000006, 1000011, 1000012, 1000013, 1000014, 1000015, 1000016, 2000011, 2000013,
                     2000015, 1000022, 1000023, 1000025, 1000035, 1000024, 1000037, 35, 36, 37)


def _slha_text(gluino_mass_gev: float) -> str:
    """A minimal SLHA spectrum: a light gluino decaying to uds (RPV, λ''₁₁₂), all else at 5 TeV."""
    lines = ["# hepflow: RPV gluino spectrum for Pythia 8", "BLOCK MODSEL", "    1   0",
             "BLOCK SMINPUTS", "    1   1.279340E+02", "    2   1.166370E-05", "    3   1.180000E-01",
             "    4   9.118760E+01", "    5   4.200000E+00", "    6   1.730000E+02", "    7   1.777000E+00",
             "BLOCK MINPAR", "    3   1.000000E+01", "BLOCK MASS", "   25   1.250000E+02",
             *(f"   {pid}   5.000000E+03" for pid in _HEAVY_SPARTICLES),
             f"   1000021   {gluino_mass_gev:.6E}", "   1000039   1.000000E+05"]
    for block, n in (("NMIX", 4), ("UMIX", 2), ("VMIX", 2), ("STOPMIX", 2), ("SBOTMIX", 2), ("STAUMIX", 2)):
        lines.append(f"BLOCK {block}")
        lines += [f"  {i} {j}  {float(i == j):.6E}" for i in range(1, n + 1) for j in range(1, n + 1)]
    lines += ["BLOCK ALPHA", "   -1.000000E-01", "BLOCK HMIX Q= 1.0E+03", "    1   5.0E+03", "    2   1.0E+01",
              "    4   2.5E+07", "BLOCK YU Q= 1.0E+03", "  3 3  9.0E-01", "BLOCK YD Q= 1.0E+03", "  3 3  1.0E-01",
              "BLOCK YE Q= 1.0E+03", "  3 3  1.0E-01",
              "DECAY   1000021   1.000000E-02", "    5.000000E-01   3   1   2   3", "    5.000000E-01   3  -1  -2  -3"]
    return "\n".join(lines) + "\n"


def gluino_slha(gluino_mass_gev: float) -> str:
    """Writes (once, atomically) the gluino spectrum Pythia reads and returns its path."""
    path = os.path.join(tempfile.gettempdir(), f"hepflow-rpv-gluino-{gluino_mass_gev:g}.slha")
    text = _slha_text(gluino_mass_gev)
    current = None
    if os.path.exists(path):
        with open(path) as f:
            current = f.read()
    if current != text:
        write_atomic(path, text)
    return path


def _top_partons(ev) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(top four-vector, [b, q, q̄'] momenta) for each top that decayed hadronically."""
    out = []
    for i in range(ev.size()):
        q = ev[i]
        if abs(q.id()) != 6 or q.iBotCopyId() != i:
            continue
        top = np.array([q.e(), q.px(), q.py(), q.pz()])
        prongs = []
        for d in (q.daughter1(), q.daughter2()):
            dq = ev[ev[d].iBotCopyId()]
            if abs(dq.id()) == 5:
                prongs.append(np.array([dq.px(), dq.py(), dq.pz()]))
            elif abs(dq.id()) == 24:
                for wd in (dq.daughter1(), dq.daughter2()):
                    if 1 <= abs(ev[wd].id()) <= 5:
                        prongs.append(np.array([ev[wd].px(), ev[wd].py(), ev[wd].pz()]))
        if len(prongs) == 3:
            out.append((top, prongs))
    return out


def _gluino_partons(ev) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(gluino four-vector, its three quark momenta) for each gluino that decayed to quarks."""
    out = []
    for i in range(ev.size()):
        g = ev[i]
        if g.id() != 1000021 or g.iBotCopyId() != i or g.daughter1() <= 0:
            continue
        quarks = [ev[d] for d in range(g.daughter1(), g.daughter2() + 1) if 1 <= abs(ev[d].id()) <= 5]
        if len(quarks) == 3:
            out.append((np.array([g.e(), g.px(), g.py(), g.pz()]), [np.array([q.px(), q.py(), q.pz()]) for q in quarks]))
    return out


def _boson_partons(boson_id: int):
    def find(ev) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """(boson four-vector, its two quark momenta) for each hadronically decaying W/Z."""
        out = []
        for i in range(ev.size()):
            v = ev[i]
            if abs(v.id()) != boson_id or v.iBotCopyId() != i or v.daughter1() <= 0:
                continue
            quarks = [ev[d] for d in (v.daughter1(), v.daughter2()) if 1 <= abs(ev[d].id()) <= 5]
            if len(quarks) == 2:
                out.append((np.array([v.e(), v.px(), v.py(), v.pz()]), [np.array([q.px(), q.py(), q.pz()]) for q in quarks]))
        return out
    return find


def _hard_parton(gluon: bool):
    def find(ev) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """(the outgoing hard-process quark or gluon, no prongs)."""
        for i in range(ev.size()):
            q = ev[i]
            if abs(q.status()) == 23 and ((q.id() == 21) if gluon else (1 <= abs(q.id()) <= 5)):
                return [(np.array([q.e(), q.px(), q.py(), q.pz()]), [])]
        return []
    return find


_TRUTH = {"top": _top_partons, "gluino": _gluino_partons, "w": _boson_partons(24), "z": _boson_partons(23),
          "quark": _hard_parton(gluon=False), "gluon": _hard_parton(gluon=True)}  # process → what the jet must match


def _eta_phi(px, py, pz):
    return np.arcsinh(pz / np.maximum(np.hypot(px, py), 1e-9)), np.arctan2(py, px)


def generate_chunk(process: str, n_jets: int, seed: int, settings: JetSettings = JetSettings()
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generates ``n_jets`` selected jets of one process with one Pythia seed.

    Returns:
        ``(arrays, info)``: arrays ``constituents`` (n, 200, 4) float32 (E, px, py, pz in GeV,
        pT-ordered, zero-padded), ``charge`` and ``type`` (n, 200) int8, ``pt``, ``eta``,
        ``phi``, ``mass`` (n,) float32, ``n_constituents`` (n,) int32, ``tau`` (n, 3) float32
        (τ1, τ2, τ3), ``truth_top`` (n, 4) float32 (E, px, py, pz of the matched top or gluino;
        the reference format's name; zero for QCD),
        ``label`` (n,) int8; info with the events tried and the cross section.
    """
    import fastjet  # optional extra [pythia]

    p = _pythia(process, settings)
    p.rndm.init(seed)  # the chunk's events depend only on its seed, whichever worker runs it
    rng = np.random.default_rng(seed)
    pileup = settings.pileup_mu is not None
    pool = load_pool(settings.minbias_pool) if pileup else None
    rng_pileup = np.random.default_rng([seed, 1])  # apart from rng: the pileup-free jets do not depend on μ
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, settings.jet_r)
    dtypes = {**_DTYPES, **(_TREE_DTYPES if settings.trees else {}), **(_PILEUP_DTYPES if pileup else {})}
    rows: dict[str, list] = {k: [] for k in dtypes}
    events = unmatched = 0
    while len(rows["pt"]) < n_jets:
        if not p.next():
            continue
        events += 1
        hard = _visible_particles(p.event)
        objs = _detector_objects(hard, settings, rng)
        if objs is None:
            continue
        particles = []
        for k, (a, b, c, d) in enumerate(zip(objs["px"], objs["py"], objs["pz"], objs["e"])):
            pj = fastjet.PseudoJet(float(a), float(b), float(c), float(d))
            pj.set_user_index(k)
            particles.append(pj)
        cs = fastjet.ClusterSequence(particles, jet_def)
        truths = _TRUTH[process](p.event) if process in _TRUTH else None
        selected = []
        for jet in fastjet.sorted_by_pt(cs.inclusive_jets(settings.pt_min_gev)):
            if not (settings.pt_min_gev < jet.pt() < settings.pt_max_gev and abs(jet.eta()) < settings.eta_max):
                continue
            truth = np.zeros(4) if truths is None else _matched_truth(jet, truths, settings.match_r)
            if truth is not None:
                selected.append((jet, truth))
        if pileup and selected:
            mixed = _cluster_mixed(hard, pool, settings, rng_pileup, fastjet, [jet for jet, _ in selected])
        for jet, truth in selected:
            row = _jet_row(jet, objs, truth, settings.jet_r, fastjet if settings.trees else None)
            if pileup:
                mixed_row = _mixed_jet_row(jet, mixed, settings.jet_r)
                if mixed_row is None:
                    unmatched += 1
                    continue
                row = {**{f"nopu_{k}": row[k] for k in _NOPU_KEYS}, **mixed_row, "truth_top": truth}
            for k, v in row.items():
                rows[k].append(v)
            if len(rows["pt"]) == n_jets:
                break
    arrays = {k: np.asarray(v, dtypes[k]) for k, v in rows.items()}
    arrays["label"] = np.full(n_jets, PROCESSES[process], np.int8)
    info = {"events": events, "sigma_gen_mb": float(p.infoPython().sigmaGen()),
            "sigma_err_mb": float(p.infoPython().sigmaErr())}
    if pileup:
        info["unmatched_jets"] = unmatched
    return arrays, info


_DTYPES = {"constituents": np.float32, "charge": np.int8, "type": np.int8, "pt": np.float32, "eta": np.float32,
           "phi": np.float32, "mass": np.float32, "n_constituents": np.int32, "tau": np.float32,
           "truth_top": np.float32}


_TREE_DTYPES = {**{f"tree_{a}": np.int16 for a in TREE_ALGORITHMS}, "lund": np.float32, "lund_primary": np.bool_}


#: Objects of the mixed event clustered: those within this many jet radii of a selected jet.
MIXED_REGION_R = 2.5
_NOPU_KEYS = ("constituents", "charge", "type", "pt", "eta", "phi", "mass", "n_constituents", "tau")
#: Pileup files: the mixed jet's tracks' vertex and truth pileup share per constituent, its area, the
#: pileup collisions drawn, the event's neutral patches, and the pileup-free jet as nopu_*.
_PILEUP_DTYPES = {"track_vertex": np.int8, "pileup_fraction": np.float32, "area": np.float32, "n_pileup": np.int32,
                  "patch_pt_sum": np.float32, "patch_pt_max": np.float32,
                  **{f"nopu_{k}": _DTYPES[k] for k in _NOPU_KEYS}}


def _visible_particles(ev) -> dict[str, np.ndarray]:
    """``px, py, pz, e, charge, pid`` of the event's visible final-state particles."""
    fs = [(q.px(), q.py(), q.pz(), q.e(), q.charge(), q.id()) for q in ev if q.isFinal() and q.isVisible()]
    columns = zip(*fs) if fs else [()] * 6
    dtypes = (float, float, float, float, np.int8, np.int64)
    return dict(zip(("px", "py", "pz", "e", "charge", "pid"), (np.array(c, t) for c, t in zip(columns, dtypes))))


def _detector_objects(hard: dict[str, np.ndarray], settings: JetSettings, rng: np.random.Generator
                      ) -> dict[str, np.ndarray] | None:
    """The event's visible final state after the detector of ``settings`` (``None`` when empty)."""
    if not len(hard["e"]):
        return None
    px, py, pz, e, charge, pid = (hard[k] for k in ("px", "py", "pz", "e", "charge", "pid"))
    if settings.detector != "none":
        return simple_detector(px, py, pz, e, charge.astype(np.int8), pid, rng, tracker=settings.detector == "simple")
    return {"px": px, "py": py, "pz": pz, "e": e, "charge": charge.astype(np.int8), "type": particle_types(pid, charge)}


def _matched_truth(jet, truths, match_r: float) -> np.ndarray | None:
    """The four-momentum of the first resonance whose own direction and decay quarks all lie
    within ``match_r`` of the jet axis, or ``None``."""
    for resonance, prongs in truths:
        directions = [_eta_phi(*resonance[1:])] + [_eta_phi(*q) for q in prongs]
        if all(delta_r(jet.eta(), jet.phi_std(), a, b) < match_r for a, b in directions):
            return resonance
    return None


def _cluster_mixed(hard: dict[str, np.ndarray], pool, settings: JetSettings, rng: np.random.Generator, fastjet,
                   near: list) -> dict[str, Any]:
    """The hard event overlaid with pileup, through the detector, clustered with active areas.

    Only objects within ``MIXED_REGION_R`` jet radii of a selected pileup-free jet (``near``) are
    clustered: an anti-kT jet of hundreds of GeV takes everything within R of its axis before
    soft particles cluster among themselves, so farther objects cannot change it (checked in
    the tests against clustering the whole event), and the whole event costs 5x more. The
    event's patches use every object.
    """
    if settings.detector == "none":
        raise ConfigError("pileup needs a detector (tracks know their vertex): use detector 'simple' or 'calo'. "
                          "Received: detector='none'")
    objs, n_pileup = mixed_event(hard, pool, settings.pileup_mu, rng, tracker=settings.detector == "simple")
    eta, phi = _eta_phi(objs["px"], objs["py"], objs["pz"])
    close = np.zeros(len(eta), bool)
    for jet in near:
        close |= delta_r(jet.eta(), jet.phi_std(), eta, phi) < MIXED_REGION_R * settings.jet_r
    particles = []
    for k in np.flatnonzero(close).tolist():
        pj = fastjet.PseudoJet(float(objs["px"][k]), float(objs["py"][k]), float(objs["pz"][k]), float(objs["e"][k]))
        pj.set_user_index(k)
        particles.append(pj)
    ghosts = fastjet.GhostedAreaSpec(GHOST_ETA_MAX, 1, GHOST_AREA)
    cs = fastjet.ClusterSequenceArea(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, settings.jet_r),
                                     fastjet.AreaDefinition(fastjet.active_area, ghosts))
    pt_sum, pt_max = event_patches(objs)
    return {"objs": objs, "cs": cs, "jets": cs.inclusive_jets(0.25 * settings.pt_min_gev), "n_pileup": n_pileup,
            "patch_pt_sum": pt_sum, "patch_pt_max": pt_max}


def _mixed_jet_row(nopu_jet, mixed: dict[str, Any], jet_r: float) -> dict[str, Any] | None:
    """The mixed event's jet nearest the pileup-free one (within R/2) as a row, or None."""
    near = [(delta_r(nopu_jet.eta(), nopu_jet.phi_std(), j.eta(), j.phi_std()), i) for i, j in enumerate(mixed["jets"])]
    near = [x for x in near if x[0] < jet_r / 2]
    if not near:
        return None
    jet = mixed["jets"][min(near)[1]]
    objs = mixed["objs"]
    row = _jet_row(jet, objs, np.zeros(4), jet_r, n_max=PILEUP_CONSTITUENTS)
    idx = _constituent_order(jet, objs)[:PILEUP_CONSTITUENTS]
    for key, dtype in (("track_vertex", np.int8), ("pileup_fraction", np.float32)):
        row[key] = np.full(PILEUP_CONSTITUENTS, -1 if key == "track_vertex" else 0, dtype)
        row[key][:len(idx)] = objs[key][idx]
    row.update(area=jet.area(), n_pileup=mixed["n_pileup"], patch_pt_sum=mixed["patch_pt_sum"],
               patch_pt_max=mixed["patch_pt_max"])
    return row


def _constituent_order(jet, objs: dict[str, np.ndarray]) -> np.ndarray:
    """Indices into ``objs`` of the jet's constituents, hardest first."""
    idx = np.array([c.user_index() for c in jet.constituents()], np.int64)
    return idx[np.argsort(-np.hypot(objs["px"][idx], objs["py"][idx]), kind="stable")]


def _jet_row(jet, objs: dict[str, np.ndarray], truth: np.ndarray, jet_r: float, fastjet=None, *,
            n_max: int = N_CONSTITUENTS) -> dict[str, Any]:
    """One selected jet as a row of the chunk's arrays: its ``n_max`` leading constituents by pT (and,
    given the fastjet module, the trees of :func:`~hepflow.physics.jet_trees.jet_tree_arrays` over them)."""
    idx = _constituent_order(jet, objs)
    n = min(len(idx), n_max)
    const = np.zeros((n_max, 4), np.float32)
    const[:n] = np.stack([objs[k][idx[:n]] for k in ("e", "px", "py", "pz")], axis=1)
    charge, types = np.zeros(n_max, np.int8), np.zeros(n_max, np.int8)
    charge[:n], types[:n] = objs["charge"][idx[:n]], objs["type"][idx[:n]]
    row = {"constituents": const, "charge": charge, "type": types, "pt": jet.pt(), "eta": jet.eta(),
           "phi": jet.phi_std(), "mass": jet.m(), "n_constituents": len(idx),
           "tau": nsubjettiness(objs["px"][idx], objs["py"][idx], objs["pz"][idx], objs["e"][idx], r0=jet_r),
           "truth_top": truth}
    if fastjet is not None:
        row.update(jet_tree_arrays(fastjet, const[:n].astype(np.float64)))
    return row


_PYTHIAS: dict = {}  # one initialized Pythia per (process, settings) and worker process


def _pythia(process: str, settings: JetSettings):
    """An initialized Pythia for the process, reused across chunks (init costs ~0.5 s)."""
    key = (process, settings, os.getpid())
    p = _PYTHIAS.get(key)
    if p is None:
        pythia8 = require_pythia()
        p = pythia8.Pythia("", False)
        for line in settings.pythia_strings(process, seed=1):
            if not p.readString(line):
                raise RuntimeError(f"Pythia rejected the setting {line!r}")
        if not p.init():
            raise RuntimeError(f"Pythia failed to initialize for process {process!r}")
        _PYTHIAS[key] = p
    return p


# -- files, chunks, resume ------------------------------------------------------------------------

def _chunk_seed(seed: int, process: str, index: int) -> int:
    """A Pythia seed (1 … 900 000 000) derived from the run seed, the process and the chunk."""
    state = np.random.SeedSequence([seed, PROCESSES[process], index]).generate_state(1)[0]
    return int(state % 900_000_000) + 1


def chunk_jobs(counts: dict[str, int], *, chunk_jets: int, seed: int) -> list[tuple[str, int, int, int]]:
    """``(process, index, n_jets, pythia_seed)`` of every chunk :func:`generate_jets` makes for these counts.

    The same list whatever runs the chunks (a process pool here, Apache Beam workers in the tfds
    builders): a chunk's jets depend only on its seed, so every runner yields the same jets.
    """
    return [(p, index, n, _chunk_seed(seed, p, index)) for p, index, n in chunk_plan(counts, chunk_jets)]


def _run_chunk(job: tuple) -> dict[str, Any]:
    out_dir, process, index, n_jets, seed, settings, file_format = job
    path = os.path.join(out_dir, f"{process}_{index:05d}.h5")
    t = time.perf_counter()
    arrays, info = generate_chunk(process, n_jets, seed, settings)
    record = {"file": os.path.basename(path), "process": process, "seed": seed, "n_jets": n_jets,
              "format": file_format, "settings": dataclasses.asdict(settings), "events": info["events"], "sigma_gen_mb": info["sigma_gen_mb"],
              "sigma_err_mb": info["sigma_err_mb"], **({"unmatched_jets": info["unmatched_jets"]}
                                                         if "unmatched_jets" in info else {})}
    if file_format == "reference":
        write_reference(path, {"constituents": arrays["constituents"], "truth_top": arrays["truth_top"],
                               "label": arrays["label"]})
    else:
        write_native_chunk(path, arrays, {**record, "settings": json.dumps(record["settings"])})
    write_sidecar(path, record)
    return {**record, "seconds": time.perf_counter() - t}


def top_tagging_counts(n_jets: int) -> dict[str, int]:
    """Jets per process of a top-tagging sample of ``n_jets``: half top, the rest QCD."""
    return {"top": n_jets // 2, "qcd": n_jets - n_jets // 2}


def generate_top_tagging(out_dir: str, *, n_jets: int, workers: int = 2, chunk_jets: int = 1000,
                         seed: int = 1, settings: JetSettings = JetSettings(), file_format: str = "native",
                         progress: bool = True) -> dict[str, Any]:
    """Generates ``n_jets`` jets (half top, half QCD) as chunk files ``top_NNNNN.h5`` / ``qcd_NNNNN.h5``.

    ``file_format`` is ``"native"`` (every feature, read fastest by hepflow) or
    ``"reference"`` (the published pandas layout: constituents, truth top, label).
    See :func:`generate_jets` for chunks, seeds, resuming and the manifest.
    """
    if n_jets <= 0:
        raise ConfigError(f"n_jets must be > 0. Received: {n_jets}")
    return generate_jets(out_dir, counts=top_tagging_counts(n_jets), workers=workers,
                         chunk_jets=chunk_jets, seed=seed, settings=settings, file_format=file_format,
                         progress=progress, dataset="top_tagging")


def generate_jets(out_dir: str, *, counts: dict[str, int], workers: int = 2, chunk_jets: int = 1000, seed: int = 1,
                  settings: JetSettings = JetSettings(), file_format: str = "native", progress: bool = True,
                  dataset: str = "jets") -> dict[str, Any]:
    """Generates ``counts[process]`` jets of each process as chunk files ``<process>_NNNNN.h5``.

    Each chunk has its own seed derived from ``seed``, the process and the chunk index;
    chunks already complete are skipped, so re-running the same command after an
    interruption finishes the job without duplicating or losing jets. Chunks are made in turn
    across processes (chunk 0 of each, then chunk 1, ...), so a stopped run leaves the classes
    balanced. Writes ``manifest.json`` (settings, seeds, versions, counts, cross sections) atomically at the end.

    Args:
        counts: Process name (``qcd``, ``top``, ``gluino``) → jets, e.g. ``{"qcd": 30000, "gluino": 5000}``.
    """
    require_pythia()
    if settings.pileup_mu is not None:
        load_pool(settings.minbias_pool)  # a missing or broken pool fails here, not in every worker
        if file_format != "native":
            raise ConfigError(f"pileup jets are written in the native layout only. Received: file_format={file_format!r}")
    if file_format not in ("native", "reference"):
        raise ConfigError(f"file_format must be 'native' or 'reference'. Received: {file_format!r}")
    unknown = sorted(set(counts) - set(PROCESSES))
    if unknown or not counts:
        raise ConfigError(f"counts must name processes of {sorted(PROCESSES)}. Received: {dict(counts)!r}")
    if min(counts.values()) <= 0 or chunk_jets <= 0 or workers <= 0:
        raise ConfigError(f"jet counts, chunk_jets and workers must be > 0. Received: counts={dict(counts)!r}, "
                          f"chunk_jets={chunk_jets}, workers={workers}")
    chunks, results, elapsed = generate_chunks(
        out_dir, counts=counts, chunk_size=chunk_jets,
        job_for=lambda p, index, n: (out_dir, p, index, n, _chunk_seed(seed, p, index), settings, file_format),
        want_for=lambda job: {"seed": job[4], "format": file_format, "settings": dataclasses.asdict(settings)},
        run=_run_chunk, size_key="n_jets", unit="jet", workers=workers, progress=progress)
    total = sum(counts.values())
    manifest = {
        "dataset": dataset, "format": file_format, "seed": seed, "n_jets": total, "chunk_jets": chunk_jets,
        "settings": dataclasses.asdict(settings),
        "detector_settings": detector_settings(settings.detector),
        **({"pileup": {**PILEUP_SETTINGS, "mu": settings.pileup_mu, "minbias_pool": settings.minbias_pool,
                       "unmatched_jets": sum(r.get("unmatched_jets", 0) for r in results)}}
           if settings.pileup_mu is not None else {}),
        "versions": {pkg: importlib.metadata.version(pkg) for pkg in ("pythia8mc", "fastjet", "h5py", "numpy")},
        "counts": {p: sum(c["n_jets"] for c in chunks if c["process"] == p) for p in counts},
        "cross_section_mb": {p: float(np.mean([c["sigma_gen_mb"] for c in chunks if c["process"] == p]))
                             for p in counts if any(c["process"] == p for c in chunks)},
        "chunks": chunks,
        "generated_this_run": {"chunks": len(results), "jets": sum(r["n_jets"] for r in results),
                               "seconds": elapsed,
                               "jets_per_s": sum(r["n_jets"] for r in results) / elapsed if results else None},
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return manifest
