"""Pileup overlay: the pool draw, vertex tags, event patches, and real Pythia jets with pileup."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hepflow.errors import ConfigError, DataError
from hepflow.physics import pythia_jets
from hepflow.physics.minbias import MinBiasPool, load_pool
from hepflow.physics.pileup import PATCH_PHI_BINS, event_patches, mixed_event


def toy_pool(n_events=50, seed=0):
    """Events of 5–40 soft pions and photons, flat in η (|η| < 4) and φ."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 40, n_events)
    n = sizes.sum()
    pt, eta, phi = rng.exponential(0.8, n) + 0.1, rng.uniform(-4, 4, n), rng.uniform(-np.pi, np.pi, n)
    charge = rng.choice([-1, 0, 1], n).astype(np.int8)
    pid = np.where(charge == 0, 22, 211 * charge.astype(np.int32)).astype(np.int32)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + np.where(charge == 0, 0, 0.0195))
    return MinBiasPool({"px": px, "py": py, "pz": pz, "e": e, "charge": charge, "pid": pid,
                        "offsets": np.concatenate([[0], np.cumsum(sizes)])})


def test_overlay_draws_whole_events_with_their_vertex():
    pool = toy_pool()
    out = pool.overlay(30, np.random.default_rng(1))
    sizes = np.diff(pool.offsets)
    counts = np.bincount(out["vertex"], minlength=31)[1:]
    assert counts.sum() == len(out["e"]) and np.all(counts >= 5)
    assert all(c in set(sizes.tolist()) for c in counts)  # every vertex holds one whole pool event
    # rotation in φ and reflection in η keep each particle's pT, |pz| and energy
    for v in (1, 17):
        sel = out["vertex"] == v
        matches = [i for i in range(pool.n_events) if sizes[i] == sel.sum()
                   and np.allclose(np.sort(pool.arrays["e"][pool.offsets[i]:pool.offsets[i + 1]]), np.sort(out["e"][sel]))]
        assert matches
        i = matches[0]
        src = slice(pool.offsets[i], pool.offsets[i + 1])
        np.testing.assert_allclose(np.hypot(out["px"][sel], out["py"][sel]),
                                   np.hypot(pool.arrays["px"][src], pool.arrays["py"][src]), rtol=1e-5)
        np.testing.assert_allclose(np.abs(out["pz"][sel]), np.abs(pool.arrays["pz"][src]), rtol=1e-6)
    assert pool.overlay(0, np.random.default_rng(1))["e"].shape == (0,)


def test_mixed_event_tags_tracks_by_vertex_and_scales_with_mu():
    pool = toy_pool()
    hard = {"px": np.array([300.0, 0.0, 50.0]), "py": np.array([0.0, 200.0, 0.0]), "pz": np.array([10.0, 0.0, 0.0]),
            "charge": np.array([1, 0, -1], np.int8), "pid": np.array([211, 22, -211])}
    hard["e"] = np.sqrt(hard["px"] ** 2 + hard["py"] ** 2 + hard["pz"] ** 2)
    rng = np.random.default_rng(3)
    objs, n_pu = mixed_event(hard, pool, 0.0, rng)
    assert n_pu == 0 and np.all(objs["pileup_fraction"] == 0)
    np.testing.assert_array_equal(objs["track_vertex"], np.where(objs["charge"] != 0, 0, -1))
    sizes, n_pus = [], []
    for mu in (20, 80):
        objs, n_pu = mixed_event(hard, pool, mu, rng)
        tracks = objs["charge"] != 0
        assert set(objs["track_vertex"][tracks].tolist()) <= {0, 1} and np.all(objs["track_vertex"][~tracks] == -1)
        lv = tracks & (objs["track_vertex"] == 0)
        assert lv.sum() == 2  # the two hard charged particles, nothing else
        np.testing.assert_array_equal(objs["pileup_fraction"][tracks], objs["track_vertex"][tracks])
        towers = objs["pileup_fraction"][~tracks]
        assert np.all((towers >= 0) & (towers <= 1)) and np.isclose(towers.min(), 0)  # the 200 GeV photon
        sizes.append(len(objs["e"]))
        n_pus.append(n_pu)
    assert 8 < n_pus[0] < 35 and 55 < n_pus[1] < 110 and sizes[1] > 2.5 * sizes[0]
    mean = np.mean([mixed_event(hard, pool, 7.0, rng)[1] for _ in range(400)])
    assert abs(mean - 7.0) < 0.5  # Poisson(μ) collisions per event


def test_event_patches_sum_and_max_of_towers():
    objs = {"px": np.array([2.0, 3.0, 1.0, 50.0]), "py": np.zeros(4), "pz": np.array([0.0, 0.0, 0.0, 0.0]),
            "charge": np.array([0, 0, 0, 1])}
    objs["px"][2], objs["py"][2] = 0.0, -1.0  # φ = -π/2
    pt_sum, pt_max = event_patches(objs)
    assert pt_sum.shape == (120,) and pt_sum.sum() == pytest.approx(6.0)  # the track does not count
    eta0, phi0 = 5 * PATCH_PHI_BINS, int((0 + np.pi) / (2 * np.pi) * PATCH_PHI_BINS)
    assert pt_sum[eta0 + phi0] == pytest.approx(5.0) and pt_max[eta0 + phi0] == pytest.approx(3.0)
    assert pt_max[eta0 + 3] == pytest.approx(1.0)


def test_settings_and_missing_pool_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="minbias_pool"):
        pythia_jets.JetSettings(pileup_mu=60)
    with pytest.raises(ConfigError, match="trees"):
        pythia_jets.JetSettings(pileup_mu=60, minbias_pool=str(tmp_path), trees=True)
    with pytest.raises(DataError, match="no minimum-bias pool"):
        load_pool(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"dataset": "top_tagging"}))
    with pytest.raises(DataError, match="not a minimum-bias pool"):
        load_pool(str(tmp_path))


@pytest.fixture(scope="module")
def real_pool(tmp_path_factory):
    pytest.importorskip("pythia8mc", reason="needs the [pythia] extra")
    from hepflow.physics.minbias import generate_minbias

    d = tmp_path_factory.mktemp("minbias")
    manifest = generate_minbias(str(d), n_events=60, workers=1, chunk_events=30, seed=3, progress=False)
    assert manifest["n_events"] == 60 and 100 < manifest["visible_particles_per_event"] < 400
    return str(d)


def test_real_jets_with_pileup(real_pool, monkeypatch):
    """The pileup-free jets are those of a run without pileup; the mixed jet is the whole event's."""
    plain = dataclasses.replace(pythia_jets.JetSettings(), mpi=False)
    with_pu = dataclasses.replace(plain, pileup_mu=40.0, minbias_pool=real_pool)
    a, _ = pythia_jets.generate_chunk("qcd", 4, seed=7, settings=plain)
    b, info = pythia_jets.generate_chunk("qcd", 4, seed=7, settings=with_pu)
    assert info["unmatched_jets"] == 0
    for k in pythia_jets._NOPU_KEYS:
        np.testing.assert_array_equal(b[f"nopu_{k}"], a[k])
    assert b["constituents"].shape == (4, pythia_jets.PILEUP_CONSTITUENTS, 4)
    assert 20 < b["n_pileup"].mean() < 60 and np.all(b["pt"] > b["nopu_pt"]) and np.all(b["mass"] > b["nopu_mass"])
    assert np.all(np.abs(b["area"] - np.pi * 0.8**2) < 0.4)
    real = b["constituents"][..., 0] > 0
    tv = b["track_vertex"]
    assert np.all((b["charge"] != 0) == (real & (tv >= 0)))  # tracks carry a vertex, towers and padding do not
    assert np.all(b["pileup_fraction"][real & (tv == 1)] == 1) and np.all(b["pileup_fraction"][real & (tv == 0)] == 0)
    assert (tv == 1).sum() > (tv == 0).sum() / 4  # plenty of pileup tracks in R = 0.8 at μ = 40
    # clustering only the neighbourhood of the selected jets gives the jets of the whole event
    monkeypatch.setattr(pythia_jets, "MIXED_REGION_R", 100.0)
    c, _ = pythia_jets.generate_chunk("qcd", 4, seed=7, settings=with_pu)
    for k in ("constituents", "pt", "mass", "track_vertex", "n_constituents"):
        np.testing.assert_array_equal(c[k], b[k])


@pytest.mark.slow
def test_generate_jets_records_pileup(real_pool, tmp_path):
    settings = dataclasses.replace(pythia_jets.JetSettings(), mpi=False, pileup_mu=10.0, minbias_pool=real_pool)
    m = pythia_jets.generate_jets(str(tmp_path / "pu"), counts={"top": 2}, workers=1, chunk_jets=2, seed=1,
                                  settings=settings, progress=False)
    assert m["pileup"]["mu"] == 10.0 and m["pileup"]["minbias_pool"] == real_pool
    assert m["pileup"]["patch_eta_bins"] * m["pileup"]["patch_phi_bins"] == 120
    with pytest.raises(DataError, match="no minimum-bias pool"):
        pythia_jets.generate_jets(str(tmp_path / "x"), counts={"top": 2}, workers=1, chunk_jets=2, seed=1,
                                  settings=dataclasses.replace(settings, minbias_pool=str(tmp_path / "nothing")),
                                  progress=False)
