"""Whole events: the object-level detector on hand-made events, slots, trigger, fakes, and real Pythia events."""
from __future__ import annotations

import numpy as np
import pytest

from hepflow.physics.events import (EVENT_PROCESSES, N_SLOTS, OBJECT_TYPES, TAG_B, EventDetector, _slots,
                                    cocktail_rates, reconstruct)

fastjet = pytest.importorskip("fastjet", reason="needs the [pythia] extra")
PERFECT = EventDetector(electron_efficiency=1.0, muon_efficiency=1.0, photon_efficiency=1.0, b_tag_efficiency=1.0,
                        mistag_rate=0.0)


def particle(pt, eta, phi, pid, m=0.0):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2), pid


def truth(particles, b=(), tau=()):
    a = np.array(particles, float)
    return {"px": a[:, 0], "py": a[:, 1], "pz": a[:, 2], "e": a[:, 3], "pid": a[:, 4].astype(np.int64),
            "b": np.array(b, float).reshape(-1, 2), "tau": np.array(tau, float).reshape(-1, 2)}


def jet_particles(pt, eta, phi, n=8):
    return [particle(pt / n, eta + 0.02 * k, phi - 0.02 * k, 211 if k % 2 else 22) for k in range(n)]


def test_isolated_electron_jets_and_met():
    rng = np.random.default_rng(0)
    ev = truth([particle(50, 0.3, 1.0, 11)] + jet_particles(80, -1.0, -2.0) + jet_particles(40, 1.5, 2.5),
               b=[(-1.0, -2.0)])
    out = reconstruct(ev, PERFECT, rng, fastjet)
    assert out is not None and out["objects"].shape == (N_SLOTS, 3)
    electrons = out["object_type"] == OBJECT_TYPES["electron"]
    assert electrons.sum() == 1 and abs(out["objects"][electrons][0, 0] - 50) < 5
    jets = out["object_type"] == OBJECT_TYPES["jet"]
    assert jets.sum() == 2 and out["objects"][jets][0, 0] > out["objects"][jets][1, 0]  # hardest first
    assert out["object_tags"][jets][0] & TAG_B and not out["object_tags"][jets][1] & TAG_B
    assert out["n_bjets"] == 1 and out["n_jets"] == 2
    # MET is minus the visible vector sum, within its resolution 0.5 √ΣET per component
    true_met = np.hypot(ev["px"].sum(), ev["py"].sum())
    assert abs(out["met"][0] - true_met) < 5 * 0.5 * np.sqrt(170) and out["object_type"][0] == OBJECT_TYPES["met"]
    assert abs(np.angle(np.exp(1j * (out["met"][1] - np.arctan2(-ev["py"].sum(), -ev["px"].sum()))))) < 0.5
    np.testing.assert_array_equal(out["mask"], out["object_type"] > 0)


def test_trigger_isolation_and_fakes():
    rng = np.random.default_rng(1)
    soft = truth([particle(15, 0.3, 1.0, 11)] + jet_particles(80, -1.0, -2.0))
    assert reconstruct(soft, PERFECT, rng, fastjet) is None  # no lepton above 23 GeV
    inside = truth([particle(40, 0.0, 0.0, 13)] + jet_particles(80, 0.05, 0.05))
    assert reconstruct(inside, PERFECT, rng, fastjet) is None  # the muon sits in a jet: not isolated
    # QCD: with 4 eligible jets the event is always kept and one jet becomes an electron
    qcd = truth(sum((jet_particles(60 + 10 * k, -1.5 + k, -2 + 1.3 * k) for k in range(4)), []))
    out = reconstruct(qcd, PERFECT, rng, fastjet, fake=True)
    assert out is not None and out["n_electrons"] == 1 and out["n_jets"] == 3
    none = truth(jet_particles(20, 0.0, 0.0))  # no jet above 23 GeV: nothing can fake the trigger
    assert reconstruct(none, PERFECT, rng, fastjet, fake=True) is None


def test_slots_truncate_and_count():
    objects = {"met": [(30.0, 0.0, 1.0)], "electron": [(10.0 + k, 0.1, 0.2) for k in range(6)], "muon": [],
               "photon": [], "jet": [(20.0 + k, 0.0, 0.0) for k in range(12)]}
    out = _slots(objects, {"jet": [TAG_B] * 12})
    assert out["n_electrons"] == 6 and out["n_jets"] == 12 and out["n_bjets"] == 12
    e = out["objects"][1:5, 0]
    np.testing.assert_array_equal(e, [15, 14, 13, 12])  # the 4 hardest of 6, hardest first
    assert out["mask"].sum() == 1 + 4 + 10 and out["ht"] == pytest.approx(sum(20 + k for k in range(12)))


def test_real_events(tmp_path):
    pytest.importorskip("pythia8mc", reason="needs the [pythia] extra")
    import dataclasses

    from hepflow.physics.events import EventSettings, generate_event_chunk, generate_events

    settings = dataclasses.replace(EventSettings(), mpi=False)
    lq, info = generate_event_chunk("leptoquark", 3, 5, settings)
    assert np.all(lq["n_electrons"] >= 1) and np.all(lq["label"] == EVENT_PROCESSES["leptoquark"])
    assert 0.5 < info["efficiency"] <= 1 and info["rate_pb"] == pytest.approx(info["sigma_pb"] * info["efficiency"])
    again, _ = generate_event_chunk("leptoquark", 3, 5, settings)
    for k in lq:
        np.testing.assert_array_equal(lq[k], again[k])
    m = generate_events(str(tmp_path / "ev"), counts={"w": 4, "qcd": 2}, workers=1, chunk_events=2, seed=1,
                        settings=settings, progress=False)
    assert m["dataset"] == "lhc_events" and m["processes"]["w"]["events"] == 4
    qcd = m["processes"]["qcd"]
    assert qcd["rate_pb"] == pytest.approx(qcd["sigma_pb"] * qcd["efficiency"] * 4 * 5e-5, rel=0.01)
    rates = cocktail_rates(m, processes=("w", "qcd"))
    assert sum(rates.values()) == pytest.approx(1.0)
