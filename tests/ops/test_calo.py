"""Shower-shape TF ops against straightforward numpy on simulated showers."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hepflow.ops.calo import LAYERS, SHAPE_NAMES, ShowerShapes, shower_shapes
from hepflow.physics.calo_sim import simulate


def numpy_shapes(d, i):
    cells = [d[k][i].astype(np.float64) for k in LAYERS]
    e = [c.sum() for c in cells]
    tot = sum(e)
    out = {"e_total": tot, "depth": (e[1] + 2 * e[2]) / tot}
    for j, c in enumerate(cells):
        out[f"e_{j}"], out[f"f_{j}"] = e[j], e[j] / tot
        for axis, name in ((0, "col"), (1, "row")):
            prof = c.sum(axis)
            if e[j] > 0:
                x = np.arange(len(prof))
                m = (prof * x).sum() / e[j]
                out[f"width_{name}_{j}"] = np.sqrt(max((prof * x**2).sum() / e[j] - m**2, 0))
            else:
                out[f"width_{name}_{j}"] = 0.0
        out[f"sparsity_{j}"] = (c > 0).mean()
    top = np.sort(cells[0].ravel())[::-1]
    out["e_ratio"] = (top[0] - top[1]) / (top[0] + top[1]) if top[0] + top[1] > 0 else 0.0
    return out


def test_shower_shapes_match_numpy():
    d = simulate("piplus", 40, seed=5)  # includes punch-through pions with nearly empty layers
    got = {k: v.numpy() for k, v in shower_shapes({k: tf.constant(d[k]) for k in LAYERS}).items()}
    assert list(got) == list(SHAPE_NAMES)
    for i in range(40):
        want = numpy_shapes(d, i)
        for k in SHAPE_NAMES:
            assert got[k][i] == pytest.approx(want[k], rel=1e-4, abs=1e-4), (i, k)


def test_empty_showers_give_zeros_not_nan_and_transform_keeps_or_drops_layers():
    zeros = {k: tf.zeros((2, *s)) for k, s in zip(LAYERS, ((3, 96), (12, 12), (12, 6)))}
    shapes = shower_shapes(zeros)
    assert all(np.all(v.numpy() == 0) for v in shapes.values())
    kept = ShowerShapes(keep_layers=True)({**zeros, "energy": tf.ones((2, 1))})
    assert set(LAYERS) <= set(kept) and "depth" in kept and "energy" in kept
    dropped = ShowerShapes()(zeros)
    assert not set(LAYERS) & set(dropped)
    with pytest.raises(KeyError, match="needs"):
        ShowerShapes()({"layer_0": zeros["layer_0"]})
