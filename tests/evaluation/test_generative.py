"""The generative metrics on simulated showers: equal samples look equal, distorted ones do not."""
from __future__ import annotations

import numpy as np
import pytest

from hepflow.evaluation.generative import (classifier_auc, compare_showers, frechet_distance, shape_features,
                                           wasserstein_table)
from hepflow.physics.calo_sim import simulate


@pytest.fixture(scope="module")
def two_samples():
    """Two independent simulated e+ samples at the same energies."""
    a = simulate("eplus", 3000, seed=1)
    b = simulate("eplus", 3000, seed=2, energies=a["energy"])
    return a, b


def distorted(showers, factor=1.3):
    """Showers whose energy moved from layer 1 into layer 2 (a shape a generator might get wrong)."""
    out = {k: np.array(v, copy=True) for k, v in showers.items()}
    moved = out["layer_1"] * (1 - 1 / factor)
    out["layer_1"] -= moved
    out["layer_2"] += moved.reshape(len(moved), 12, 12)[:, :, ::2] + moved.reshape(len(moved), 12, 12)[:, :, 1::2]
    return out


def test_equal_samples_give_small_distances_and_a_chance_classifier(two_samples):
    a, b = two_samples
    fa, fb = shape_features(a), shape_features(b)
    w = wasserstein_table(fa, fb)
    assert max(w.values()) < 0.1  # statistical fluctuations only
    assert frechet_distance(fa, fb) < 0.1
    names = list(fa)
    auc = classifier_auc(np.stack([fa[k] for k in names], 1), np.stack([fb[k] for k in names], 1), seed=0)
    assert 0.4 < auc < 0.6


def test_distorted_showers_are_caught(two_samples):
    a, b = two_samples
    fa, fd = shape_features(a), shape_features(distorted(b))
    w = wasserstein_table(fa, fd)
    assert w["f_2"] > 1.0 and w["f_1"] > 1.0  # the moved energy shows in the layer fractions
    assert frechet_distance(fa, fd) > 1.0
    names = list(fa)
    auc = classifier_auc(np.stack([fa[k] for k in names], 1), np.stack([fd[k] for k in names], 1), seed=0)
    assert auc > 0.9


@pytest.mark.slow
def test_compare_showers_writes_report_and_plots(two_samples, tmp_path):
    a, b = two_samples
    fake = {k: b[k] for k in ("layer_0", "layer_1", "layer_2")}
    table = compare_showers(a, fake, out_dir=str(tmp_path), log_dir=str(tmp_path / "tb"))
    assert table["n"] == 3000 and table["classifier_auc_features"] < 0.6 and table["classifier_auc_cells"] < 0.65
    for name in ("generative.json", "average_showers.png", "shapes_10_50GeV.png", "shapes_50_100GeV.png"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tb").iterdir())
