from __future__ import annotations

import numpy as np
import pytest

from hepflow.physics.nsubjettiness import delta_r, nsubjettiness, tau_n

fastjet = pytest.importorskip("fastjet", reason="needs the [pythia] extra")


def four(pt, eta, phi):
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)


def test_delta_r_wraps_phi():
    assert delta_r(0.0, 3.1, 0.0, -3.1) == pytest.approx(2 * np.pi - 6.2)
    assert delta_r(1.0, 0.0, 0.0, 0.0) == pytest.approx(1.0)


def test_tau_n_by_hand():
    # Two constituents of 100 GeV at ΔR = 0.4 from one axis in the middle: τ1 = (100·0.2 + 100·0.2) / (200·0.8)
    pt = np.array([100.0, 100.0]); eta = np.array([-0.2, 0.2]); phi = np.zeros(2)
    assert tau_n(pt, eta, phi, np.array([0.0]), np.array([0.0])) == pytest.approx(40 / 160)


def test_nsubjettiness_of_two_and_three_prong_jets():
    # Three hard, well separated prongs: τ3 ≈ 0 (each prong its own axis), τ2 > 0, τ1 > τ2.
    prongs = [(200.0, 0.3, 0.0), (150.0, -0.2, 0.25), (100.0, -0.1, -0.3)]
    cols = [four(pt, eta, phi) for pt, eta, phi in prongs]
    px, py, pz, e = (np.array(c) for c in zip(*cols))
    t1, t2, t3 = nsubjettiness(px, py, pz, e)
    assert t3 == pytest.approx(0.0, abs=1e-9)
    assert t1 > t2 > t3
    # By hand: kT distances d_ij = min(pT_i², pT_j²) ΔR_ij² are d_AB = 150²·0.3125 = 7031,
    # d_AC = 100²·0.25 = 2500, d_BC = 100²·0.3125 = 3125 (beam distances pT² are larger),
    # so A and C merge first; the τ2 axes are (A + C) and B.
    ax, ay, az, ae = px[0] + px[2], py[0] + py[2], pz[0] + pz[2], e[0] + e[2]
    axis_eta, axis_phi = np.arcsinh(az / np.hypot(ax, ay)), np.arctan2(ay, ax)
    expected = (200 * delta_r(0.3, 0.0, axis_eta, axis_phi)
                + 100 * delta_r(-0.1, -0.3, axis_eta, axis_phi)) / (450 * 0.8)
    assert t2 == pytest.approx(expected, rel=1e-6)
    # τ1: one axis along the whole jet
    jx, jy, jz = px.sum(), py.sum(), pz.sum()
    jet_eta, jet_phi = np.arcsinh(jz / np.hypot(jx, jy)), np.arctan2(jy, jx)
    expected1 = sum(pt * delta_r(eta, phi, jet_eta, jet_phi) for pt, eta, phi in prongs) / (450 * 0.8)
    assert t1 == pytest.approx(expected1, rel=1e-6)


def test_nsubjettiness_ignores_zero_padding():
    px, py, pz, e = (np.array(v + [0.0] * 5) for v in ([50.0, -20.0], [0.0, 10.0], [5.0, 1.0], [50.3, 22.4]))
    assert nsubjettiness(px, py, pz, e)[1] == pytest.approx(0.0, abs=1e-9)
