"""Normalizing-flow building blocks: rational-quadratic splines, coupling and autoregressive blocks, ActNorm.

Every block maps ``x`` to ``y`` and back, and returns the log-determinant of the Jacobian of the
direction it ran, summed over the feature axis, so a flow is a list of blocks whose
log-determinants add up. Written in ``keras.ops`` (runs on any Keras backend).

* :func:`rational_quadratic_spline`: the monotonic rational-quadratic spline of Durkan et al.,
  "Neural Spline Flows" (arXiv:1906.04032), on ``[-bound, bound]`` with identity tails; with all
  parameters zero it is the identity (equal bins, unit derivatives).
* :class:`SplineCoupling`: half the features (a fixed random split drawn from ``seed``) and a
  context set the spline parameters of the other half (one pass both ways).
* :class:`SplineAutoregressive`: a masked autoregressive block (MADE masks, Germain et al.,
  arXiv:1502.03509): feature ``d``'s spline depends on features ``< d`` and the context. Density
  evaluation is one pass; sampling takes one pass per feature (for the few features it is used on).
* :class:`ActNorm`: a per-feature affine map whose first batch sets it to zero mean and unit
  variance (Kingma & Dhariwal, arXiv:1807.03039), then trained with the rest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["rational_quadratic_spline", "SplineCoupling", "SplineAutoregressive", "ActNorm"]

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3
# softplus(0 + _DERIVATIVE_SHIFT) + _MIN_DERIVATIVE = 1: zero parameters give unit derivatives (the identity)
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - _MIN_DERIVATIVE))


def _knots(unnormalized, bound: float):
    """Bin sizes from unnormalized ``(..., K)`` → knot positions ``(..., K + 1)`` from -bound to bound."""
    bins = unnormalized.shape[-1]
    sizes = _MIN_BIN + (1.0 - _MIN_BIN * bins) * ops.softmax(unnormalized, axis=-1)
    cum = ops.cumsum(sizes, axis=-1)
    cum = ops.concatenate([ops.zeros_like(cum[..., :1]), cum[..., :-1], ops.ones_like(cum[..., :1])], axis=-1)
    return 2.0 * bound * cum - bound


def _at(values, index):
    """``values[..., index]`` per element, as a one-hot sum (on CPU several times faster than a gather
    in the forward and the backward pass)."""
    return ops.sum(values * ops.one_hot(index, values.shape[-1], dtype=values.dtype), axis=-1)


def rational_quadratic_spline(inputs, widths, heights, derivatives, *, inverse: bool = False, bound: float = 5.0):
    """Element-wise monotonic rational-quadratic spline and the log of its derivative.

    Args:
        inputs: ``(..., D)`` values.
        widths: ``(..., D, K)`` unnormalized bin widths (softmax, at least 10⁻³ of the interval each).
        heights: ``(..., D, K)`` unnormalized bin heights.
        derivatives: ``(..., D, K - 1)`` unnormalized derivatives at the inner knots (softplus);
            the derivative at ±bound is 1, matching the identity outside.
        inverse: Evaluate the inverse spline.
        bound: The spline acts on ``[-bound, bound]``; outside it is the identity.

    Returns:
        ``(outputs, log_abs_det)``, both ``(..., D)``: the log of ``|d outputs / d inputs|``
        per element for the direction evaluated.
    """
    x_knots, y_knots = _knots(widths, bound), _knots(heights, bound)
    ones = ops.ones_like(derivatives[..., :1])
    slopes = ops.concatenate([ones, _MIN_DERIVATIVE + ops.softplus(derivatives + _DERIVATIVE_SHIFT), ones], axis=-1)
    inside = ops.logical_and(inputs >= -bound, inputs <= bound)
    clipped = ops.clip(inputs, -bound, bound)
    bins = widths.shape[-1]
    knots = y_knots if inverse else x_knots
    index = ops.sum(ops.cast(ops.expand_dims(clipped, -1) >= knots[..., 1:bins], "int32"), axis=-1)
    x_k, y_k = _at(x_knots, index), _at(y_knots, index)
    w_k, h_k = _at(x_knots, index + 1) - x_k, _at(y_knots, index + 1) - y_k
    d_k, d_k1 = _at(slopes, index), _at(slopes, index + 1)
    s = h_k / w_k
    curvature = d_k1 + d_k - 2.0 * s
    if inverse:
        dy = clipped - y_k
        a = h_k * (s - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -s * dy
        root = ops.sqrt(ops.maximum(b * b - 4.0 * a * c, 0.0))
        xi = ops.clip(2.0 * c / (-b - root), 0.0, 1.0)
        outputs = x_k + xi * w_k
    else:
        xi = ops.clip((clipped - x_k) / w_k, 0.0, 1.0)
        t = xi * (1.0 - xi)
        outputs = y_k + h_k * (s * xi * xi + d_k * t) / (s + curvature * t)
    t = xi * (1.0 - xi)
    denominator = s + curvature * t
    log_derivative = (2.0 * ops.log(s) + ops.log(d_k1 * xi * xi + 2.0 * s * t + d_k * (1.0 - xi) ** 2)
                      - 2.0 * ops.log(denominator))
    if inverse:
        log_derivative = -log_derivative
    return ops.where(inside, outputs, inputs), ops.where(inside, log_derivative, 0.0)


def _spline_parameters(raw, dims: int, bins: int):
    """``(batch, dims * (3 bins - 1))`` → widths, heights ``(batch, dims, bins)``, derivatives ``(…, bins - 1)``."""
    raw = ops.reshape(raw, (-1, dims, 3 * bins - 1))
    return raw[..., :bins], raw[..., bins:2 * bins], raw[..., 2 * bins:]


@keras.saving.register_keras_serializable(package="hepflow")
class SplineCoupling(keras.layers.Layer):
    """A rational-quadratic coupling block: ``(x (batch, dims), context (batch, context_dims))`` → ``(y, logdet)``.

    A fixed random half of the features (drawn from ``seed``) passes unchanged and, with the
    context, sets the spline of every feature in the other half through a dense network whose
    last layer starts at zero (the block starts as the identity).

    Args:
        dims: Number of features.
        context_dims: Size of the conditioning input (0: none).
        seed: Seed of the split into conditioning and transformed features.
        bins: Spline bins (default 8).
        hidden: Widths of the dense network (default (256, 256)).
        bound: The splines act on ``[-bound, bound]`` (default 5).
    """

    def __init__(self, *, dims: int, context_dims: int = 0, seed: int = 0, bins: int = 8,
                 hidden: Sequence[int] = (256, 256), bound: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(dims) < 2 or int(bins) < 2:
            raise ValueError(f"SplineCoupling needs dims ≥ 2 and bins ≥ 2. Received: dims={dims}, bins={bins}")
        self.dims, self.context_dims, self.seed = int(dims), int(context_dims), int(seed)
        self.bins, self.hidden, self.bound = int(bins), tuple(int(h) for h in hidden), float(bound)
        order = np.random.default_rng(self.seed).permutation(self.dims)
        half = self.dims // 2
        self._kept, self._changed = np.sort(order[:half]), np.sort(order[half:])
        self._restore = np.argsort(np.concatenate([self._kept, self._changed]))
        self.network = [keras.layers.Dense(width, activation="relu") for width in self.hidden]
        self.network.append(keras.layers.Dense(len(self._changed) * (3 * self.bins - 1), kernel_initializer="zeros"))

    def build(self, input_shape=None):
        width = len(self._kept) + self.context_dims
        for layer in self.network:
            layer.build((None, width))
            width = layer.units
        self.built = True

    def call(self, x, context=None, inverse: bool = False):
        kept = ops.take(x, self._kept, axis=1)
        changed = ops.take(x, self._changed, axis=1)
        h = kept if context is None or self.context_dims == 0 else ops.concatenate([kept, context], axis=-1)
        for layer in self.network:
            h = layer(h)
        widths, heights, derivatives = _spline_parameters(h, len(self._changed), self.bins)
        changed, log_det = rational_quadratic_spline(changed, widths, heights, derivatives, inverse=inverse,
                                                     bound=self.bound)
        y = ops.take(ops.concatenate([kept, changed], axis=1), self._restore, axis=1)
        return y, ops.sum(log_det, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims, "context_dims": self.context_dims, "seed": self.seed,
                "bins": self.bins, "hidden": list(self.hidden), "bound": self.bound}


@keras.saving.register_keras_serializable(package="hepflow")
class SplineAutoregressive(keras.layers.Layer):
    """A masked autoregressive spline block: ``(x (batch, dims), context)`` → ``(y, logdet)``.

    Feature ``d``'s spline is set by features ``0 … d - 1`` and the context (MADE masks; the
    context reaches every hidden unit). ``inverse=True`` (sampling) runs the network ``dims``
    times, each pass fixing one more feature.

    Args:
        dims: Number of features.
        context_dims: Size of the conditioning input (0: none).
        bins: Spline bins (default 8).
        hidden: Widths of the masked dense layers (default (64, 64)); each at least ``dims - 1``.
        bound: The splines act on ``[-bound, bound]`` (default 5).
    """

    def __init__(self, *, dims: int, context_dims: int = 0, bins: int = 8, hidden: Sequence[int] = (64, 64),
                 bound: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dims, self.context_dims, self.bins = int(dims), int(context_dims), int(bins)
        self.hidden, self.bound = tuple(int(h) for h in hidden), float(bound)
        if self.dims < 1 or self.bins < 2 or not self.hidden or min(self.hidden) < max(self.dims - 1, 1):
            raise ValueError("SplineAutoregressive needs dims ≥ 1, bins ≥ 2 and hidden widths ≥ dims - 1. Received: "
                             f"dims={dims}, bins={bins}, hidden={list(self.hidden)}")
        # hidden degrees 1 … dims - 1; with a context also 0 (units that see the context only), so
        # that feature 0's spline depends on the context
        low = 0 if self.context_dims else 1
        degrees = [np.arange(1, self.dims + 1)]
        for width in self.hidden:
            degrees.append(np.arange(width) % max(self.dims - low, 1) + low)
        self._masks = [(later[None, :] >= earlier[:, None]).astype("float32")
                       for earlier, later in zip(degrees[:-1], degrees[1:])]
        parameters = 3 * self.bins - 1
        out_degrees = np.repeat(np.arange(1, self.dims + 1), parameters)
        self._masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype("float32"))

    def build(self, input_shape=None):
        sizes = [self.dims, *self.hidden, self.dims * (3 * self.bins - 1)]
        self.kernels, self.biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            init = "zeros" if last else "glorot_uniform"
            self.kernels.append(self.add_weight(shape=(n_in, n_out), initializer=init, name=f"kernel_{i}"))
            self.biases.append(self.add_weight(shape=(n_out,), initializer="zeros", name=f"bias_{i}"))
        self.context_kernel = (self.add_weight(shape=(self.context_dims, self.hidden[0]), initializer="glorot_uniform",
                                               name="context_kernel") if self.context_dims else None)
        self.built = True

    def _parameters(self, x, context):
        h = x
        for i, (kernel, bias, mask) in enumerate(zip(self.kernels, self.biases, self._masks)):
            h = ops.matmul(h, kernel * mask) + bias
            if i == 0 and self.context_kernel is not None and context is not None:
                h = h + ops.matmul(context, self.context_kernel)
            if i < len(self.kernels) - 1:
                h = ops.relu(h)
        return _spline_parameters(h, self.dims, self.bins)

    def call(self, x, context=None, inverse: bool = False):
        if not inverse:
            y, log_det = rational_quadratic_spline(x, *self._parameters(x, context), bound=self.bound)
            return y, ops.sum(log_det, axis=-1)
        y = ops.zeros_like(x)
        for _ in range(self.dims):  # pass d fixes feature d: its parameters depend on features < d only
            y, log_det = rational_quadratic_spline(x, *self._parameters(y, context), inverse=True, bound=self.bound)
        return y, ops.sum(log_det, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims, "context_dims": self.context_dims, "bins": self.bins,
                "hidden": list(self.hidden), "bound": self.bound}


@keras.saving.register_keras_serializable(package="hepflow")
class ActNorm(keras.layers.Layer):
    """``y = (x - shift) · exp(log_scale)`` per feature; ``initialize(x)`` sets it to standardize ``x``.

    Args:
        dims: Number of features.
    """

    def __init__(self, *, dims: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dims = int(dims)

    def build(self, input_shape=None):
        self.shift = self.add_weight(shape=(self.dims,), initializer="zeros", name="shift", aggregation="mean")
        self.log_scale = self.add_weight(shape=(self.dims,), initializer="zeros", name="log_scale", aggregation="mean")
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False, name="initialized",
                                           aggregation="mean")
        self.built = True

    def initialize(self, x) -> None:
        """Sets shift and scale to the mean and standard deviation of ``x`` (batch, dims) the first
        time it is called and keeps them afterwards. No control flow (a blend by the ``initialized``
        flag), so it may run in every training step under any ``tf.distribute`` strategy."""
        first = 1.0 - ops.cast(self.initialized, x.dtype)
        mean, variance = ops.mean(x, axis=0), ops.var(x, axis=0)
        self.shift.assign(first * mean + (1.0 - first) * self.shift)
        self.log_scale.assign(first * (-0.5 * ops.log(variance + 1e-6)) + (1.0 - first) * self.log_scale)
        self.initialized.assign(ops.ones_like(self.initialized))

    def call(self, x, inverse: bool = False):
        log_det = ops.sum(self.log_scale) * ops.ones_like(x[:, 0])
        if inverse:
            return x * ops.exp(-self.log_scale) + self.shift, -log_det
        return (x - self.shift) * ops.exp(self.log_scale), log_det

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims}
