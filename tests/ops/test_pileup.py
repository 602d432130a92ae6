"""Pileup mitigation ops on hand-made jets: each method does exactly what it says."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from hepflow.ops.jets import jet_kinematics
from hepflow.ops.pileup import (PATCH_AREA, PileupMitigation, PummlImages, area_median_subtraction,
                                charged_hadron_subtraction, disc_area_four_vector, mitigated_jet, patch_rho,
                                pumml_images, pumml_jet, softkiller, softkiller_cut)


def massless(pt, eta, phi):
    return [pt * math.cosh(eta), pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)]


def event():
    """One jet: an LV track (50 GeV), a PU track (5), a hard tower (40), a soft tower (1.5), padding."""
    c = np.array([[massless(50, 0.1, 0.2), massless(5, -0.2, 0.1), massless(40, 0.0, 0.0), massless(1.5, 0.3, -0.2),
                   [0, 0, 0, 0]]], np.float32)
    return {"constituents": c, "charge": np.array([[1, -1, 0, 0, 0]], np.int8),
            "type": np.array([[3, 3, 1, 2, 0]], np.int8), "track_vertex": np.array([[0, 1, -1, -1, -1]], np.int8),
            "patch_pt_sum": np.full((1, 120), 6.0, np.float32), "patch_pt_max": np.array([[2.0] * 60 + [1.0] * 60],
                                                                                            np.float32),
            "area": np.array([0.5], np.float32), "pileup_fraction": np.zeros((1, 5), np.float32),
            "n_pileup": np.array([3], np.int32)}


def test_chs_removes_pileup_tracks_only():
    e = event()
    out = charged_hadron_subtraction(e["constituents"], e["track_vertex"]).numpy()
    np.testing.assert_array_equal(out[0, 1], 0)
    np.testing.assert_array_equal(out[0, [0, 2, 3]], e["constituents"][0, [0, 2, 3]])


def test_rho_and_softkiller_cut_are_patch_medians():
    sums = np.arange(120, dtype=np.float32)[None] * np.float32(0.1)
    np.testing.assert_allclose(patch_rho(sums).numpy(), [np.median(sums) / PATCH_AREA], rtol=1e-6)
    e = event()
    np.testing.assert_allclose(softkiller_cut(e["patch_pt_max"]).numpy(), [1.5])  # even count: mean of the middle two
    kept = softkiller(e["constituents"], e["charge"], softkiller_cut(e["patch_pt_max"])).numpy()
    # the 1.5 GeV tower is not below a 1.5 GeV cut; at 1.6 it goes, and the 5 GeV PU track (charged) stays
    np.testing.assert_array_equal(kept[0, 3], e["constituents"][0, 3])
    kept = softkiller(e["constituents"], e["charge"], tf.constant([1.6])).numpy()
    np.testing.assert_array_equal(kept[0, 3], 0)
    np.testing.assert_array_equal(kept[0, 1], e["constituents"][0, 1])


def test_disc_area_is_what_uniform_ghosts_sum_to():
    rng = np.random.default_rng(0)
    eta0, phi0, area = 1.2, 3.0, 2.0  # near φ = π: the wrap must not matter
    r = np.sqrt(area / np.pi) * np.sqrt(rng.random(400_000))
    t = rng.uniform(0, 2 * np.pi, 400_000)
    eta, phi = eta0 + r * np.cos(t), phi0 + r * np.sin(t)
    ghost_pt = area / len(r)
    mc = ghost_pt * np.array([np.cosh(eta).sum(), np.cos(phi).sum(), np.sin(phi).sum(), np.sinh(eta).sum()])
    out = disc_area_four_vector(tf.constant([eta0]), tf.constant([phi0]), tf.constant([area])).numpy()[0]
    np.testing.assert_allclose(out, mc, rtol=3e-3, atol=3e-3)
    k = jet_kinematics(tf.constant(out[None, None], tf.float32))
    assert float(k["pt"][0]) < area and float(k["mass"][0]) > 0.3  # spread in φ and η: less pT, some mass


def test_area_median_subtracts_uniform_pileup():
    """A jet plus uniform soft deposits over its disc gets the jet back."""
    rng = np.random.default_rng(1)
    hard = np.array(massless(300, 0.4, -0.5)) + np.array(massless(100, 0.7, -0.3))
    area, rho = np.pi * 0.8**2, 60.0
    n = 200_000
    r, t = 0.8 * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    k_hard = jet_kinematics(tf.constant(hard[None, None], tf.float32))
    eta, phi = float(k_hard["eta"][0]) + r * np.cos(t), float(k_hard["phi"][0]) + r * np.sin(t)
    soft_pt = rho * area / n
    soft = soft_pt * np.array([np.cosh(eta).sum(), np.cos(phi).sum(), np.sin(phi).sum(), np.sinh(eta).sum()])
    out = area_median_subtraction(tf.constant((hard + soft)[None], tf.float32), tf.constant([rho]),
                                  tf.constant([area])).numpy()
    # the soft disc is centred on the hard jet while the subtraction uses the mixed jet's axis: close, not exact
    k_out, k_mix = jet_kinematics(tf.constant(out[:, None])), jet_kinematics(tf.constant((hard + soft)[None, None], tf.float32))
    assert float(k_mix["mass"][0]) - float(k_hard["mass"][0]) > 40  # pileup adds much mass
    assert abs(float(k_out["pt"][0] - k_hard["pt"][0])) < 1.0
    assert abs(float(k_out["mass"][0] - k_hard["mass"][0])) < 3.0
    # more pileup than jet: nothing left
    jet = np.array([massless(100, 0.5, 0.3)], np.float32)
    np.testing.assert_array_equal(area_median_subtraction(jet, tf.constant([300.0]), tf.constant([1.0])).numpy(), 0)


def test_local_rho_uses_the_rows_near_the_jet():
    grid = np.tile(np.linspace(10, 100, 10)[:, None], (1, 12)).astype(np.float32)  # density grows with η row
    sums = grid.reshape(1, 120)
    np.testing.assert_allclose(patch_rho(sums).numpy(), [np.median(grid) / PATCH_AREA], rtol=1e-6)
    np.testing.assert_allclose(patch_rho(sums, tf.constant([0.1])).numpy(), [grid[5, 0] / PATCH_AREA], rtol=1e-6)
    np.testing.assert_allclose(patch_rho(sums, tf.constant([-2.4])).numpy(), [grid[1, 0] / PATCH_AREA], rtol=1e-6)
    np.testing.assert_allclose(patch_rho(np.concatenate([sums, sums]), tf.constant([2.4, 0.1])).numpy(),
                               [grid[8, 0] / PATCH_AREA, grid[5, 0] / PATCH_AREA], rtol=1e-6)


def test_mitigated_jets_per_method():
    e = {k: tf.constant(v) for k, v in event().items()}
    c = event()["constituents"][0].astype(np.float64)
    expect = {"none": c.sum(0), "chs": c[[0, 2, 3]].sum(0), "softkiller": c[[0, 2, 3]].sum(0)}  # cut 1.5: kept
    for method, p in expect.items():
        np.testing.assert_allclose(mitigated_jet(e, method)[1].numpy()[0], p, rtol=1e-5)
    chs = c[[0, 2, 3]].sum(0)
    k = jet_kinematics(tf.constant(chs[None, None], tf.float32))
    expect_am = chs - 6.0 / PATCH_AREA * disc_area_four_vector(k["eta"], k["phi"], tf.constant([0.5])).numpy()[0]
    np.testing.assert_allclose(mitigated_jet(e, "area_median")[1].numpy()[0], expect_am, rtol=1e-4)
    with pytest.raises(ValueError, match="method must be one of"):
        mitigated_jet(e, "puppi")


def test_transform_compacts_and_names_missing_keys():
    e = {k: tf.constant(v) for k, v in event().items()}
    out = PileupMitigation(method="chs")(e)
    assert "track_vertex" not in out and "patch_pt_max" not in out and "area" not in out
    c = out["constituents"].numpy()[0]
    pts = np.hypot(c[:, 1], c[:, 2])
    np.testing.assert_allclose(pts, [50, 40, 1.5, 0, 0], rtol=1e-5)  # hardest first, the PU track gone, padding last
    np.testing.assert_array_equal(out["charge"].numpy()[0], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["type"].numpy()[0], [3, 1, 2, 0, 0])
    np.testing.assert_allclose(out["pt"].numpy(), jet_kinematics(out["constituents"])["pt"].numpy(), rtol=1e-5)
    with pytest.raises(KeyError, match="patch_pt_max"):
        PileupMitigation(method="softkiller")({"constituents": e["constituents"], "track_vertex": e["track_vertex"],
                                               "charge": e["charge"]})
    with pytest.raises(ValueError, match="method must be one of"):
        PileupMitigation(method="soft_killer")


def test_pumml_images_channels_and_round_trip():
    e = event()
    nopu = e["constituents"][:, [0, 2, 4, 4, 4]]  # the LV track and the hard tower, padded
    nopu_charge = np.array([[1, 0, 0, 0, 0]], np.int8)
    out = pumml_images(e["constituents"], e["charge"], e["track_vertex"], nopu_constituents=nopu,
                       nopu_charge=nopu_charge, npix=16, half_width=0.8, pt_unit=10.0)
    img = out["image"].numpy()[0]
    np.testing.assert_allclose(img.sum((0, 1)), [5.0, 0.5, 4.15], rtol=1e-5)  # LV tracks, PU tracks, towers /10 GeV
    np.testing.assert_allclose(out["target_image"].numpy()[0].sum(), 4.0, rtol=1e-5)
    # the axis is the CHS jet's; summing the target image back with the LV track gives the pileup-free jet
    # up to the pixel size (0.1 here)
    jet = pumml_jet(out["target_image"], out["axis"], e["constituents"], e["charge"], e["track_vertex"],
                    half_width=0.8, pt_unit=10.0)
    k, truth = jet_kinematics(jet[:, None]), jet_kinematics(tf.constant(nopu))
    np.testing.assert_allclose(k["pt"].numpy(), truth["pt"].numpy(), rtol=0.01)
    assert abs(float(k["mass"][0] - truth["mass"][0])) < 2.0
    t = PummlImages(npix=16)({k: tf.constant(v) for k, v in {**e, "nopu_constituents": nopu,
                                                             "nopu_charge": nopu_charge}.items()})
    assert t["image"].shape == (1, 16, 16, 3) and t["target_image"].shape == (1, 16, 16, 1)
    assert "constituents" not in t and "nopu_constituents" not in t
    with pytest.raises(KeyError, match="track_vertex"):
        PummlImages()({"constituents": tf.constant(e["constituents"]), "charge": tf.constant(e["charge"])})
