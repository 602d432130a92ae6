"""Spline-flow blocks: a hand-computed spline value, identity at zero parameters, inverses, log-determinants."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hepflow.layers import ActNorm, SplineAutoregressive, SplineCoupling, rational_quadratic_spline


def test_spline_matches_the_rational_quadratic_formula_by_hand():
    # two bins on [-1, 1]: equal widths (knots -1, 0, 1); heights softmax([0, ln 3]) = [1/4, 3/4] → sizes
    # 1e-3 + 0.998·[1/4, 3/4] = [0.2505, 0.7495] of the interval → y-knots -1, -0.499, 1; unit derivatives.
    # At x = -0.5 (bin 0, ξ = 1/2): s = h/w = 0.501, and Durkan et al.'s eq. (4):
    # y = -1 + h (s ξ² + ξ(1-ξ)) / (s + (2 - 2s) ξ(1-ξ)) = -1 + 0.501·0.37525 / 0.7505
    widths = np.zeros((1, 1, 2), np.float32)
    heights = np.array([[[0.0, np.log(3.0)]]], np.float32)
    derivatives = np.zeros((1, 1, 1), np.float32)
    y, log_det = rational_quadratic_spline(np.array([[-0.5]], np.float32), widths, heights, derivatives, bound=1.0)
    s = 0.501
    expected = -1.0 + 0.501 * (s * 0.25 + 0.25) / (s + (2.0 - 2.0 * s) * 0.25)
    # derivative: s² (ξ² + 2 s ξ(1-ξ) + (1-ξ)²) / (s + (2-2s) ξ(1-ξ))²
    slope = s * s * (0.25 + 2 * s * 0.25 + 0.25) / (s + (2.0 - 2.0 * s) * 0.25) ** 2
    assert float(y[0, 0]) == pytest.approx(expected, abs=1e-6)
    assert float(log_det[0, 0]) == pytest.approx(np.log(slope), abs=1e-5)
    # outside the bound: the identity
    y, log_det = rational_quadratic_spline(np.array([[1.5]], np.float32), widths, heights, derivatives, bound=1.0)
    assert float(y[0, 0]) == 1.5 and float(log_det[0, 0]) == 0.0


def test_spline_is_the_identity_at_zero_parameters_and_inverts():
    rng = np.random.default_rng(0)
    x = (3 * rng.normal(size=(500, 4))).astype(np.float32)
    zeros = np.zeros((500, 4, 8), np.float32)
    y, log_det = rational_quadratic_spline(x, zeros, zeros, zeros[..., :7])
    np.testing.assert_allclose(np.asarray(y), x, atol=1e-5)
    np.testing.assert_allclose(np.asarray(log_det), 0.0, atol=1e-5)
    w, h, d = (0.5 * rng.normal(size=s).astype(np.float32) for s in ((500, 4, 8), (500, 4, 8), (500, 4, 7)))
    y, log_det = rational_quadratic_spline(x, w, h, d)
    back, inverse_log_det = rational_quadratic_spline(y, w, h, d, inverse=True)
    np.testing.assert_allclose(np.asarray(back), x, atol=1e-4)
    np.testing.assert_allclose(np.asarray(inverse_log_det), -np.asarray(log_det), atol=1e-4)
    grid = np.linspace(-6, 6, 400, dtype=np.float32)[:, None]
    one = [np.repeat(a[:1, :1], 400, axis=0) for a in (w, h, d)]
    assert np.all(np.diff(np.asarray(rational_quadratic_spline(grid, *one)[0])[:, 0]) > 0)


def _randomize(layer, seed):
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign((0.3 * rng.normal(size=v.shape)).astype(np.float32))


@pytest.mark.parametrize("make", [lambda: SplineCoupling(dims=6, context_dims=2, seed=3, hidden=(16,)),
                                  lambda: SplineAutoregressive(dims=4, context_dims=2, hidden=(16, 16))],
                         ids=["coupling", "autoregressive"])
def test_blocks_invert_and_their_log_det_is_the_jacobian(make):
    layer = make()
    layer.build()
    _randomize(layer, 1)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(8, layer.dims)).astype(np.float32))
    context = rng.normal(size=(8, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, log_det = layer(x, context)
    jacobian = tape.batch_jacobian(y, x).numpy()
    np.testing.assert_allclose(np.linalg.slogdet(jacobian)[1], np.asarray(log_det), atol=1e-4)
    back, inverse_log_det = layer(y, context, inverse=True)
    np.testing.assert_allclose(np.asarray(back), x.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(inverse_log_det), -np.asarray(log_det), atol=1e-4)
    if isinstance(layer, SplineAutoregressive):  # feature d depends on features < d only
        assert np.allclose(np.triu(jacobian, k=1), 0.0)
    # the context changes every transformed feature (feature 0 of the autoregressive block too)
    other, _ = layer(x, context + 1.0)
    changed = np.abs(np.asarray(other) - np.asarray(y)).max(axis=0) > 1e-4
    expected = np.ones(layer.dims, bool)
    if isinstance(layer, SplineCoupling):
        expected[layer._kept] = False
    np.testing.assert_array_equal(changed, expected)


def test_actnorm_standardizes_its_first_batch():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(4000, 3)).astype(np.float32)
    norm = ActNorm(dims=3)
    norm.build()
    norm.initialize(x)
    y, log_det = norm(x)
    np.testing.assert_allclose(np.asarray(y).mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y).std(0), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(log_det), -np.log(x.std(0)).sum(), atol=1e-3)
    np.testing.assert_allclose(np.asarray(norm(y, inverse=True)[0]), x, atol=1e-4)
    norm.initialize(x * 5.0 + 1.0)  # later calls keep what the first batch set
    np.testing.assert_allclose(np.asarray(norm(x)[0]), np.asarray(y), atol=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="hidden widths"):
        SplineAutoregressive(dims=5, hidden=(2,))
    with pytest.raises(ValueError, match="dims ≥ 2"):
        SplineCoupling(dims=1)
