"""Pooling over particles that respects zero padding."""
from __future__ import annotations

import keras
from keras import ops

__all__ = ["MaskedSum", "MaskedAverage", "WeightedSum"]


@keras.saving.register_keras_serializable(package="hepflow")
class MaskedSum(keras.layers.Layer):
    """``Σ_i mask_i · x_i`` over the particle axis: ``[(batch, n, c), (batch, n, 1)]`` → ``(batch, c)``."""

    def call(self, inputs):
        x, mask = inputs
        return ops.sum(x * mask, axis=1)


@keras.saving.register_keras_serializable(package="hepflow")
class MaskedAverage(keras.layers.Layer):
    """Mean over real particles: ``[(batch, n, c), (batch, n, 1)]`` → ``(batch, c)``."""

    def call(self, inputs):
        x, mask = inputs
        return ops.sum(x * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="hepflow")
class WeightedSum(keras.layers.Layer):
    """``Σ_i z_i · x_i`` (Energy Flow Networks): ``[(batch, n, c), (batch, n)]`` → ``(batch, c)``."""

    def call(self, inputs):
        x, z = inputs
        return ops.sum(x * ops.expand_dims(z, -1), axis=1)
