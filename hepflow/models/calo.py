"""CNNs on the three CaloGAN calorimeter layers: particle identification and energy regression."""
from __future__ import annotations

from collections.abc import Sequence

import keras

from hepflow.data.formats.calogan import CALOGAN_LAYERS

__all__ = ["calo_cnn", "calo_energy_cnn", "ShowerNormalization", "ScaledEnergy"]

_POOLING = {"layer_0": (1, 4), "layer_1": (2, 2), "layer_2": (2, 2)}  # the coarse layer-0 strips pool along eta
_LAYERS = tuple((name, shape, _POOLING[name]) for name, shape in CALOGAN_LAYERS.items())


def _branches(inputs: dict, filters: Sequence[int], *, normalize: bool) -> list:
    branches = []
    for key, shape, pool in _LAYERS:
        h = keras.layers.Reshape((*shape, 1))(inputs[key])
        if normalize:
            h = keras.layers.BatchNormalization(synchronized=True)(h)  # global-batch statistics on every replica count
        for f in filters:
            h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(pool)(h)
        branches.append(keras.layers.Flatten()(h))
    return branches


def calo_cnn(*, filters: Sequence[int] = (16, 32), dense: Sequence[int] = (64, 64), dropout: float = 0.0,
             output_activation: str = "sigmoid", name: str = "calo_cnn") -> keras.Model:
    """One small convolutional branch per layer, concatenated, then dense layers.

    Each branch: batch normalization of the cell energies, ``3 × 3`` convolutions with
    ``filters`` (ReLU, "same" padding), a max-pool suited to the layer's granularity (1 × 4 for
    the 3 × 96 strips, 2 × 2 otherwise), flatten.

    Args:
        filters: Convolution widths of each branch.
        dense: Widths of the dense layers after the concatenation (ReLU).
        dropout: Dropout after each dense layer.
        output_activation: ``"sigmoid"`` (a score for binary labels) or ``"linear"``
            (regression, e.g. of the incident energy).
        name: Model name.
    """
    if output_activation not in ("sigmoid", "linear"):
        raise ValueError(f"output_activation must be 'sigmoid' or 'linear'. Received: {output_activation!r}")
    inputs = {key: keras.Input(shape, name=key) for key, shape, _ in _LAYERS}
    branches = _branches(inputs, filters, normalize=True)
    h = keras.layers.Concatenate()(branches)
    for width in dense:
        h = keras.layers.Dense(width, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, keras.layers.Dense(1, activation=output_activation, name="score")(h), name=name)


@keras.saving.register_keras_serializable(package="hepflow")
class ShowerNormalization(keras.layers.Layer):
    """Splits showers into their total deposit and their shape.

    Input: the three layers' cell energies. Output: the layers divided by the shower's total
    deposit (the shape, independent of the energy scale), the total deposit ``(batch, 1)`` and
    its logarithm ``log(total + 1e-3)``.
    """

    def call(self, layers):
        totals = [keras.ops.sum(keras.ops.reshape(x, (keras.ops.shape(x)[0], -1)), axis=1, keepdims=True)
                  for x in layers]
        total = totals[0] + totals[1] + totals[2]
        safe = keras.ops.maximum(total, 1e-6)
        shapes = [x / keras.ops.reshape(safe, (-1,) + (1,) * (len(x.shape) - 1)) for x in layers]
        return shapes, total, keras.ops.log(total + 1e-3)


@keras.saving.register_keras_serializable(package="hepflow")
class ScaledEnergy(keras.layers.Layer):
    """``total · exp(correction) · scale``: the deposit corrected multiplicatively, in output units.

    Args:
        scale: Factor from the deposit's units (GeV) to the target's (0.01 for targets in units
            of 100 GeV).
    """

    def __init__(self, *, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        total, correction = inputs
        return total * keras.ops.exp(correction) * self.scale

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def calo_energy_cnn(*, filters: Sequence[int] = (16, 32), dense: Sequence[int] = (64, 64),
                    output_scale: float = 0.01, name: str = "calo_energy_cnn") -> keras.Model:
    """Energy regression: the summed deposit times a correction learned from the shower shape.

    The deposit of a shower is already a good energy estimate (the calibrated sum); what a
    network can add is a correction for what the sum misses: leakage out of the back and sides
    and the shower-to-shower fluctuations of where the energy went. So the model predicts
    ``E = total · exp(c)`` with ``c`` from a CNN on the normalized shower (cells / total, one
    branch per layer as in :func:`calo_cnn`, without batch normalization so the shape stays
    exact) and ``log(total)``. The last layer starts at zero, so an untrained model is the
    plain sum and training only has to learn the correction; this avoids the energy-scale bias
    of a network that must learn the linear response through ReLUs and pooling.

    Args:
        filters: Convolution widths of each branch.
        dense: Widths of the dense layers (ReLU).
        output_scale: Units of the output per GeV of deposit: 0.01 when the target is the
            incident energy / 100 GeV (``target_scale: 100`` in the training config).
        name: Model name.
    """
    inputs = {key: keras.Input(shape, name=key) for key, shape, _ in _LAYERS}
    shapes, total, log_total = ShowerNormalization(name="shower_normalization")([inputs[k] for k, _, _ in _LAYERS])
    normalized = {key: x for (key, _, _), x in zip(_LAYERS, shapes)}
    h = keras.layers.Concatenate()(_branches(normalized, filters, normalize=False) + [log_total])
    for width in dense:
        h = keras.layers.Dense(width, activation="relu")(h)
    correction = keras.layers.Dense(1, kernel_initializer="zeros", name="correction")(h)
    return keras.Model(inputs, ScaledEnergy(scale=output_scale, name="score")([total, correction]), name=name)
