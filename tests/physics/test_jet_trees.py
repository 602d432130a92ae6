"""Clustering trees and Lund coordinates of jets: hand-made cases and real Pythia jets."""
from __future__ import annotations

import numpy as np
import pytest

from hepflow.physics.jet_trees import (N_LEAVES, TREE_ALGORITHMS, desc_pt_children, jet_tree_arrays, lund_features,
                                       node_momenta, primary_nodes)

fastjet = pytest.importorskip("fastjet")


def massless(pt, eta, phi):
    return np.array([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)])


def test_three_particles_cluster_closest_first_and_give_the_lund_coordinates_by_hand():
    a, b, c = massless(100, 0, 0), massless(50, 0.1, 0), massless(10, 0.5, 0.5)
    arrays = jet_tree_arrays(fastjet, np.stack([a, b, c]))
    for alg in ("ca", "kt", "antikt"):
        np.testing.assert_array_equal(arrays[f"tree_{alg}"][:2], [[0, 1], [N_LEAVES, 2]])
        assert (arrays[f"tree_{alg}"][2:] == -1).all()
    np.testing.assert_array_equal(arrays["tree_desc_pt"][:2], [[0, 1], [N_LEAVES, 2]])
    ab = a + b
    pt_ab, y_ab = np.hypot(ab[1], ab[2]), 0.5 * np.log((ab[0] + ab[3]) / (ab[0] - ab[3]))
    phi_ab = np.arctan2(ab[2], ab[1])
    delta = np.hypot(0.5 - y_ab, 0.5 - phi_ab)  # c is massless: rapidity = eta
    m = np.sqrt(max((ab + c)[0] ** 2 - np.sum((ab + c)[1:] ** 2), 0))
    want = [np.log(10 * delta), np.log(delta), np.log(10 / (pt_ab + 10)), np.log(m), np.arctan2(0.5 - y_ab, 0.5 - phi_ab)]
    np.testing.assert_allclose(arrays["lund"][1], want, rtol=1e-5)
    assert list(np.flatnonzero(arrays["lund_primary"])) == [0, 1]  # root, then its harder child (a+b)


def test_desc_pt_chain_and_primary_branch():
    ch = desc_pt_children(5)
    np.testing.assert_array_equal(ch, [[0, 1], [N_LEAVES, 2], [N_LEAVES + 1, 3], [N_LEAVES + 2, 4]])
    assert primary_nodes(ch).all()
    leaves = np.stack([massless(pt, 0.1 * i, 0.0) for i, pt in enumerate((50, 40, 30, 20, 10))])
    np.testing.assert_allclose(node_momenta(leaves, ch)[-1], leaves.sum(axis=0))
    assert lund_features(leaves, ch).shape == (4, 5)


def test_real_jets_have_valid_trees_for_every_algorithm(tiny_jets5_dir):
    import h5py

    for path in sorted(tiny_jets5_dir.glob("*.h5")):
        with h5py.File(path, "r") as f:
            const, n_const = f["constituents"][...], np.minimum(f["n_constituents"][...], N_LEAVES)
            trees = {alg: f[f"tree_{alg}"][...] for alg in TREE_ALGORITHMS}
            primary = f["lund_primary"][...]
        for j in range(len(const)):
            n = int(n_const[j])
            if n < 2:  # a one-constituent jet has no internal node
                assert all((tree[j] == -1).all() for tree in trees.values()) and not primary[j].any()
                continue
            for alg, tree in trees.items():
                ch = tree[j, :n - 1].astype(np.int64)
                assert (tree[j, n - 1:] == -1).all()
                flat = ch.ravel()
                assert sorted(flat[flat < N_LEAVES]) == list(range(n)), (path.name, alg)  # every leaf once
                inner = flat[flat >= N_LEAVES] - N_LEAVES
                assert sorted(inner) == list(range(n - 2))  # every node but the root is someone's child
                assert all(c - N_LEAVES < k for k, row in enumerate(ch) for c in row if c >= N_LEAVES)
                np.testing.assert_allclose(node_momenta(const[j, :n].astype(np.float64), ch)[-1],
                                           const[j, :n].sum(axis=0), rtol=1e-4)
            assert primary[j, n - 2] and primary[j].sum() >= 1


def test_w_z_quark_and_gluon_jets_match_their_truth(tiny_jets5_dir):
    import h5py

    def truth_mass(process):
        with h5py.File(sorted(tiny_jets5_dir.glob(f"{process}_*.h5"))[0], "r") as f:
            t = f["truth_top"][...].astype(np.float64)
        return np.sqrt(np.maximum(t[:, 0] ** 2 - np.sum(t[:, 1:] ** 2, axis=1), 0))

    assert np.all(np.abs(truth_mass("w") - 80.4) < 15) and np.all(np.abs(truth_mass("z") - 91.2) < 15)
    assert np.all(truth_mass("quark") < 5) and np.all(truth_mass("gluon") < 5)  # the matched hard parton
