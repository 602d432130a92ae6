"""A CNN on the three CaloGAN calorimeter layers, for particle identification or energy regression."""
from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["calo_cnn"]

_LAYERS = (("layer_0", (3, 96), (1, 4)), ("layer_1", (12, 12), (2, 2)), ("layer_2", (12, 6), (2, 2)))


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
    inputs, branches = {}, []
    for key, shape, pool in _LAYERS:
        inputs[key] = keras.Input(shape, name=key)
        h = keras.layers.Reshape((*shape, 1))(inputs[key])
        h = keras.layers.BatchNormalization()(h)
        for f in filters:
            h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(pool)(h)
        branches.append(keras.layers.Flatten()(h))
    h = keras.layers.Concatenate()(branches)
    for width in dense:
        h = keras.layers.Dense(width, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, keras.layers.Dense(1, activation=output_activation, name="score")(h), name=name)
