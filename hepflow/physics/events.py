"""Whole collision events as lists of reconstructed objects, for event-level anomaly detection.

Standard-model processes and new-physics signals from Pythia 8 at 13 TeV go through an
object-level detector and a single-lepton trigger, and are stored as padded object lists in the
manner of the 2021 anomaly-detection data challenge (Govorkova et al., arXiv:2107.02157): missing
transverse energy, up to 4 electrons, 4 muons, 4 photons and 10 jets as (pT, η, φ), with the
object type, b- and τ-tags and a mask (:data:`SLOTS`). :mod:`hepflow.data.formats.events` writes
and reads the challenge's own (N, 19, 4) layout.

Processes (:data:`EVENT_PROCESSES`): ``w`` (W → ℓν, ℓ = e, μ, τ), ``z`` (Z/γ* → ℓℓ, m > 40 GeV),
``ttbar``, ``diboson`` (WW, WZ, ZZ) and ``qcd`` (multijets, pT̂ > 30 GeV) for the standard model;
``zprime`` (a 1 TeV Z′ → tt̄), ``leptoquark`` (pairs of 400 GeV leptoquarks → u e) and
``h_tautau`` (a 60 GeV neutral scalar → ττ) as signals. The mixing rate of each process is its
cross section times the fraction of its events the trigger keeps, recorded per chunk and summed
in the manifest (:func:`cocktail_rates`).

The detector (:class:`EventDetector`, numbers recorded in every manifest):

* Electrons (|η| < 2.5) and muons (|η| < 2.4) with pT > 3 GeV, found with efficiency 0.9 and 0.95,
  isolated (scalar pT of the other visible particles within ΔR < 0.3 below 15 % of theirs),
  smeared by 2 % and 1 % ⊕ 0.01 %·pT.
* Photons (|η| < 2.5, pT > 10 GeV, isolated likewise; efficiency 0.9, 2 % smearing).
* Jets: anti-kT R = 0.4 (FastJet) of the remaining visible particles, |η| < 4, pT > 15 GeV after
  a smearing of 100 %/√pT ⊕ 5 %; b-tagged with probability 0.7 when a B hadron with pT > 5 GeV lies
  within ΔR < 0.3, else 0.01; τ-tagged with probability 0.6 when the visible part of a hadronic τ
  decay (pT > 10 GeV) does, else 0.01.
* Missing transverse energy: minus the vector sum of the visible particles within |η| < 4.9, each
  component smeared by 0.5 GeV^½ · √ΣET.
* Trigger: an electron or a muon with pT > 23 GeV.
* Fake leptons: a QCD event passes the trigger almost only through a jet taken for an electron
  (hepflow's own lepton isolation keeps 1 in 10⁴ of them or fewer). Each jet with pT > 23 GeV and
  |η| < 2.5 fakes an electron with probability ``fake_rate`` (5·10⁻⁵); to make such events at a
  usable rate, a QCD event is kept with probability (eligible jets)/4 and one eligible jet becomes
  an electron, and its process rate carries the factor 4·``fake_rate`` (unweighted importance
  sampling). Other processes get no fakes (a 10⁻⁴ effect on them).

Needs the ``[pythia]`` extra.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import time
from typing import Any

import numpy as np

from hepflow.errors import ConfigError
from hepflow.io import write_json_atomic
from hepflow.physics.chunks import generate_chunks, write_native_chunk, write_sidecar
from hepflow.physics.nsubjettiness import delta_r
from hepflow.physics.pythia_jets import require_pythia

__all__ = ["EVENT_PROCESSES", "SIGNALS", "SLOTS", "OBJECT_TYPES", "EventDetector", "EventSettings", "reconstruct",
           "generate_event_chunk", "generate_events", "cocktail_rates", "N_SLOTS"]

#: process → label in the files (the standard model below 10, signals from 10).
EVENT_PROCESSES = {"w": 0, "z": 1, "ttbar": 2, "diboson": 3, "qcd": 4, "zprime": 10, "leptoquark": 11, "h_tautau": 12}
SIGNALS = ("zprime", "leptoquark", "h_tautau")
#: object type → slots, in the order they are stored.
SLOTS = {"met": 1, "electron": 4, "muon": 4, "photon": 4, "jet": 10}
N_SLOTS = sum(SLOTS.values())
#: object type → the code in ``object_type`` (0: an empty slot).
OBJECT_TYPES = {"met": 1, "electron": 2, "muon": 3, "jet": 4, "photon": 5}
TAG_B, TAG_TAU = 1, 2
_FAKE_SLOTS = 4  # a QCD event is kept with probability (eligible jets) / 4


@dataclasses.dataclass(frozen=True)
class EventDetector:
    """The object-level detector's numbers (see the module docstring)."""

    electron_eta_max: float = 2.5
    muon_eta_max: float = 2.4
    lepton_pt_min_gev: float = 3.0
    electron_efficiency: float = 0.9
    muon_efficiency: float = 0.95
    isolation: float = 0.15
    isolation_r: float = 0.3
    photon_pt_min_gev: float = 10.0
    photon_efficiency: float = 0.9
    jet_r: float = 0.4
    jet_pt_min_gev: float = 15.0
    jet_eta_max: float = 4.0
    b_tag_efficiency: float = 0.7
    tau_tag_efficiency: float = 0.6
    mistag_rate: float = 0.01
    met_resolution: float = 0.5
    trigger_pt_gev: float = 23.0
    fake_rate: float = 5e-5


@dataclasses.dataclass(frozen=True)
class EventSettings:
    """Generator settings (recorded in every chunk and the manifest).

    Attributes:
        ecm_gev: Centre-of-mass energy (13 TeV, as the 2021 challenge).
        mpi: Multi-parton interactions.
        zprime_mass_gev, leptoquark_mass_gev, scalar_mass_gev: Signal masses.
        detector: The object-level detector.
    """

    ecm_gev: float = 13_000.0
    mpi: bool = True
    zprime_mass_gev: float = 1000.0
    leptoquark_mass_gev: float = 400.0
    scalar_mass_gev: float = 60.0
    detector: EventDetector = EventDetector()

    def pythia_strings(self, process: str) -> list[str]:
        common = [f"Beams:eCM = {self.ecm_gev}", "Random:setSeed = on", "Random:seed = 1", "Print:quiet = on",
                  "Next:numberCount = 0", "Next:numberShowEvent = 0", "Next:numberShowInfo = 0",
                  "Next:numberShowProcess = 0", f"PartonLevel:MPI = {'on' if self.mpi else 'off'}"]
        strings = {
            "w": ["WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"],
            "z": ["WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 11 13 15",
                  "PhaseSpace:mHatMin = 40"],
            "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
            "diboson": ["WeakDoubleBoson:all = on"],
            "qcd": ["HardQCD:all = on", "PhaseSpace:pTHatMin = 30"],
            "zprime": ["NewGaugeBoson:ffbar2gmZZprime = on", "Zprime:gmZmode = 3", f"32:m0 = {self.zprime_mass_gev}",
                       "32:onMode = off", "32:onIfAny = 6"],
            "leptoquark": ["LeptoQuark:all = on", f"42:m0 = {self.leptoquark_mass_gev}"],
            "h_tautau": ["Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", f"35:m0 = {self.scalar_mass_gev}",
                         "35:onMode = off", "35:onIfAny = 15"],
        }
        if process not in strings:
            raise ConfigError(f"process must be one of {sorted(EVENT_PROCESSES)}. Received: process={process!r}")
        return common + strings[process]


_PYTHIAS: dict = {}


def _pythia(process: str, settings: EventSettings):
    key = (process, settings, os.getpid())
    if key not in _PYTHIAS:
        p = require_pythia().Pythia("", False)
        for line in settings.pythia_strings(process):
            if not p.readString(line):
                raise RuntimeError(f"Pythia rejected the setting {line!r}")
        if not p.init():
            raise RuntimeError(f"Pythia failed to initialize for process {process!r}")
        _PYTHIAS[key] = p
    return _PYTHIAS[key]


def _is_b_hadron(pid: int) -> bool:
    a = abs(pid)
    return (a // 100) % 10 == 5 or (a // 1000) % 10 == 5


def _visible(ev) -> dict[str, np.ndarray]:
    """``px, py, pz, e, pid`` of the visible final-state particles."""
    fs = [(q.px(), q.py(), q.pz(), q.e(), q.id()) for q in ev if q.isFinal() and q.isVisible()]
    c = np.array(fs, float).reshape(-1, 5)
    return {"px": c[:, 0], "py": c[:, 1], "pz": c[:, 2], "e": c[:, 3], "pid": c[:, 4].astype(np.int64)}


def _may_trigger(visible: dict[str, np.ndarray], det: EventDetector) -> bool:
    """Whether an electron or muon comes near the trigger threshold (smearing is a few %: 10 % margin)."""
    lepton = np.isin(np.abs(visible["pid"]), (11, 13))
    return bool(np.any(np.hypot(visible["px"][lepton], visible["py"][lepton]) > 0.9 * det.trigger_pt_gev))


def _truth(ev, visible: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The visible particles with the B hadrons and the visible parts of hadronic τ decays."""
    bs, taus = [], []
    for i in range(ev.size()):
        q = ev[i]
        pid = abs(q.id())
        if pid > 100 and _is_b_hadron(pid) and q.pT() > 5 and q.isHadron():
            bs.append((q.eta(), q.phi()))
        elif pid == 15 and q.iBotCopyId() == i and q.daughter1() > 0:
            daughters = [ev[d] for d in range(q.daughter1(), q.daughter2() + 1)]
            if not any(abs(d.id()) in (11, 13) for d in daughters):
                vis = [d for d in daughters if abs(d.id()) not in (12, 14, 16)]
                px, py, pz = (sum(f(d) for d in vis) for f in (lambda d: d.px(), lambda d: d.py(), lambda d: d.pz()))
                pt = np.hypot(px, py)
                if pt > 10:
                    taus.append((np.arcsinh(pz / pt), np.arctan2(py, px)))
    return {**visible, "b": np.array(bs).reshape(-1, 2), "tau": np.array(taus).reshape(-1, 2)}


def _isolated(i: np.ndarray, pt, eta, phi, det: EventDetector) -> np.ndarray:
    """Whether each particle of ``i`` carries less than ``isolation`` of its pT around it."""
    out = np.zeros(len(i), bool)
    for k, j in enumerate(i):
        near = delta_r(eta[j], phi[j], eta, phi) < det.isolation_r
        out[k] = (pt[near].sum() - pt[j]) < det.isolation * pt[j]
    return out


def reconstruct(truth: dict[str, np.ndarray], det: EventDetector, rng: np.random.Generator, fastjet,
                *, fake: bool = False) -> dict[str, np.ndarray] | None:
    """One event's objects as padded slots, or None when the trigger (or, with ``fake``, the fake draw) fails."""
    px, py, pz, e, pid = (truth[k] for k in ("px", "py", "pz", "e", "pid"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    apid = np.abs(pid)
    found: dict[str, list] = {"electron": [], "muon": [], "photon": []}
    used = np.zeros(len(pt), bool)
    for kind, code, eta_max, eff, pt_min, res in (
            ("electron", 11, det.electron_eta_max, det.electron_efficiency, det.lepton_pt_min_gev, (0.02, 0.0)),
            ("muon", 13, det.muon_eta_max, det.muon_efficiency, det.lepton_pt_min_gev, (0.01, 1e-4)),
            ("photon", 22, det.electron_eta_max, det.photon_efficiency, det.photon_pt_min_gev, (0.02, 0.0))):
        cand = np.flatnonzero((apid == code) & (pt > pt_min) & (np.abs(eta) < eta_max))
        cand = cand[_isolated(cand, pt, eta, phi, det)] if len(cand) else cand
        cand = cand[rng.random(len(cand)) < eff]
        sigma = np.hypot(res[0], res[1] * pt[cand])
        spt = pt[cand] * np.maximum(1 + rng.normal(0, 1, len(cand)) * sigma, 0.05)
        used[cand] = True
        found[kind] = [(a, b, c) for a, b, c in zip(spt, eta[cand], phi[cand])]
    rest = np.flatnonzero(~used & (np.abs(eta) < 5))
    particles = []
    for k in rest.tolist():
        particles.append(fastjet.PseudoJet(float(px[k]), float(py[k]), float(pz[k]), float(e[k])))
    cs = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, det.jet_r))
    jets, tags = [], []
    for j in cs.inclusive_jets(det.jet_pt_min_gev * 0.5):
        if abs(j.eta()) > det.jet_eta_max:
            continue
        sigma = np.hypot(1.0 / np.sqrt(j.pt()), 0.05)
        jpt = j.pt() * max(1 + rng.normal() * sigma, 0.05)
        if jpt < det.jet_pt_min_gev:
            continue
        has_b = len(truth["b"]) and np.any(delta_r(j.eta(), j.phi_std(), truth["b"][:, 0], truth["b"][:, 1]) < 0.3)
        has_tau = len(truth["tau"]) and np.any(delta_r(j.eta(), j.phi_std(), truth["tau"][:, 0], truth["tau"][:, 1]) < 0.3)
        tag = TAG_B * (rng.random() < (det.b_tag_efficiency if has_b else det.mistag_rate))
        tag |= TAG_TAU * (rng.random() < (det.tau_tag_efficiency if has_tau else det.mistag_rate))
        jets.append((jpt, j.eta(), j.phi_std()))
        tags.append(tag)
    if fake:  # a QCD jet taken for an electron (kept with probability eligible / _FAKE_SLOTS)
        eligible = [k for k, (a, b, _) in enumerate(jets) if a > det.trigger_pt_gev and abs(b) < det.electron_eta_max]
        if rng.random() >= min(len(eligible), _FAKE_SLOTS) / _FAKE_SLOTS:
            return None
        k = eligible[rng.integers(len(eligible))]
        found["electron"].append(jets.pop(k))
        tags.pop(k)
    if not any(o[0] > det.trigger_pt_gev for kind in ("electron", "muon") for o in found[kind]):
        return None
    visible = np.abs(eta) < 4.9
    sum_et = pt[visible].sum()
    mex, mey = -px[visible].sum(), -py[visible].sum()
    mex, mey = mex + rng.normal() * det.met_resolution * np.sqrt(sum_et), mey + rng.normal() * det.met_resolution * np.sqrt(sum_et)
    return _slots({"met": [(np.hypot(mex, mey), 0.0, np.arctan2(mey, mex))], **found, "jet": jets},
                  {"jet": tags})


def _slots(objects: dict[str, list], tags: dict[str, list]) -> dict[str, np.ndarray]:
    """Objects into the fixed slots, hardest first within each type, with counts."""
    out = {"objects": np.zeros((N_SLOTS, 3), np.float32), "object_type": np.zeros(N_SLOTS, np.int8),
           "object_tags": np.zeros(N_SLOTS, np.int8)}
    start = 0
    for kind, n in SLOTS.items():
        items = objects.get(kind, [])
        order = np.argsort([-o[0] for o in items], kind="stable")[:n]
        for s, k in enumerate(order):
            out["objects"][start + s] = items[k]
            out["object_type"][start + s] = OBJECT_TYPES[kind]
            if kind in tags:
                out["object_tags"][start + s] = tags[kind][k]
        start += n
    jet_tags = np.array(tags.get("jet", []), np.int8)
    out.update(mask=out["object_type"] > 0, n_electrons=len(objects["electron"]), n_muons=len(objects["muon"]),
               n_photons=len(objects["photon"]), n_jets=len(objects["jet"]),
               n_bjets=int(np.sum(jet_tags & TAG_B > 0)), n_tau_jets=int(np.sum(jet_tags & TAG_TAU > 0)),
               met=np.array(objects["met"][0][::2], np.float32), ht=np.float32(sum(o[0] for o in objects["jet"])))
    return out


_DTYPES = {"objects": np.float32, "object_type": np.int8, "object_tags": np.int8, "mask": np.bool_,
           "n_electrons": np.int32, "n_muons": np.int32, "n_photons": np.int32, "n_jets": np.int32,
           "n_bjets": np.int32, "n_tau_jets": np.int32, "met": np.float32, "ht": np.float32}


def generate_event_chunk(process: str, n_events: int, seed: int, settings: EventSettings = EventSettings()
                         ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``n_events`` triggered events of one process with one Pythia seed.

    Returns:
        ``(arrays, info)``: the slot arrays (see the module docstring) with ``label``; info with
        the events tried, the cross section (pb), the trigger's efficiency and the rate (pb) this
        process adds to the cocktail (σ × efficiency, × the fake factor for QCD).
    """
    import fastjet  # optional extra [pythia]

    p = _pythia(process, settings)
    p.rndm.init(seed)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in _DTYPES}
    tried = 0
    while len(rows["mask"]) < n_events:
        if not p.next():
            continue
        tried += 1
        visible = _visible(p.event)
        if process != "qcd" and not _may_trigger(visible, settings.detector):
            continue
        event = reconstruct(_truth(p.event, visible), settings.detector, rng, fastjet, fake=process == "qcd")
        if event is None:
            continue
        for k in _DTYPES:
            rows[k].append(event[k])
    arrays = {k: np.asarray(v, _DTYPES[k]) for k, v in rows.items()}
    arrays["label"] = np.full(n_events, EVENT_PROCESSES[process], np.int8)
    sigma_pb = float(p.infoPython().sigmaGen()) * 1e9
    efficiency = n_events / tried
    factor = _FAKE_SLOTS * settings.detector.fake_rate if process == "qcd" else 1.0
    return arrays, {"tried": tried, "sigma_pb": sigma_pb, "efficiency": efficiency,
                    "rate_pb": sigma_pb * efficiency * factor}


def _run_chunk(job: tuple) -> dict[str, Any]:
    out_dir, process, index, n, seed, settings = job
    path = os.path.join(out_dir, f"{process}_{index:05d}.h5")
    t = time.perf_counter()
    arrays, info = generate_event_chunk(process, n, seed, settings)
    record = {"file": os.path.basename(path), "process": process, "seed": seed, "n_events": n,
              "settings": dataclasses.asdict(settings), **info}
    write_native_chunk(path, arrays, {"settings": json.dumps(record["settings"])})
    write_sidecar(path, record)
    return {**record, "seconds": time.perf_counter() - t}


def generate_events(out_dir: str, *, counts: dict[str, int], workers: int = 2, chunk_events: int = 1000,
                    seed: int = 1, settings: EventSettings = EventSettings(), progress: bool = True) -> dict[str, Any]:
    """Generates ``counts[process]`` triggered events per process as ``<process>_NNNNN.h5``; resumes.

    Returns:
        The manifest (also ``out_dir/manifest.json``, ``dataset: lhc_events``): settings, seeds,
        versions, counts, per process the cross section, trigger efficiency and cocktail rate
        (pb, :func:`cocktail_rates`), and ``generated_this_run`` with ``events_per_s``.
    """
    unknown = sorted(set(counts) - set(EVENT_PROCESSES))
    if unknown or not counts or min(counts.values()) <= 0 or chunk_events <= 0 or workers <= 0:
        raise ConfigError(f"counts must map processes of {sorted(EVENT_PROCESSES)} to positive numbers, and "
                          f"chunk_events and workers be > 0. Received: counts={dict(counts)!r}, "
                          f"chunk_events={chunk_events}, workers={workers}")

    def seed_for(process: str, index: int) -> int:
        state = np.random.SeedSequence([seed, 7, EVENT_PROCESSES[process], index]).generate_state(1)[0]
        return int(state % 900_000_000) + 1

    chunks, results, elapsed = generate_chunks(
        out_dir, counts=counts, chunk_size=chunk_events,
        job_for=lambda p, index, n: (out_dir, p, index, n, seed_for(p, index), settings),
        want_for=lambda job: {"seed": job[4], "settings": dataclasses.asdict(settings)},
        run=_run_chunk, size_key="n_events", unit="event", workers=workers, progress=progress)
    made = sum(r["n_events"] for r in results)
    per_process = {}
    for p in counts:
        mine = [c for c in chunks if c["process"] == p]
        tried = sum(c["tried"] for c in mine)
        per_process[p] = {"events": sum(c["n_events"] for c in mine), "tried": tried,
                          "sigma_pb": float(np.mean([c["sigma_pb"] for c in mine])),
                          "efficiency": sum(c["n_events"] for c in mine) / tried,
                          "rate_pb": float(np.average([c["rate_pb"] for c in mine],
                                                      weights=[c["tried"] for c in mine]))}
    manifest = {
        "dataset": "lhc_events", "seed": seed, "chunk_events": chunk_events, "settings": dataclasses.asdict(settings),
        "slots": SLOTS, "object_types": OBJECT_TYPES, "processes": per_process,
        "versions": {pkg: importlib.metadata.version(pkg) for pkg in ("pythia8mc", "fastjet", "h5py", "numpy")},
        "chunks": chunks,
        "generated_this_run": {"events": made, "seconds": elapsed, "events_per_s": made / elapsed if made else None},
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return manifest


def cocktail_rates(manifest: dict[str, Any], processes=("w", "z", "ttbar", "diboson", "qcd")) -> dict[str, float]:
    """Each standard-model process's share of the triggered events: σ × trigger efficiency, normalized."""
    missing = [p for p in processes if p not in manifest["processes"]]
    if missing:
        raise ConfigError(f"the events' manifest has no {missing}; generate them first. "
                          f"Received processes: {sorted(manifest['processes'])}")
    rates = {p: manifest["processes"][p]["rate_pb"] for p in processes}
    total = sum(rates.values())
    return {p: r / total for p, r in rates.items()}
