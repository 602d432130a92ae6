"""Layers for sets stored as padded slots whose first feature says which slots are real."""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["ElementMask", "MaskedSelfAttention"]


@keras.saving.register_keras_serializable(package="hepflow")
class ElementMask(keras.layers.Layer):
    """``(batch, n, features)`` → ``(batch, n, 1)``: 1 where feature ``channel`` is non-zero (a real element)."""

    def __init__(self, *, channel: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel

    def call(self, x):
        return ops.cast(ops.not_equal(x[..., self.channel:self.channel + 1], 0), x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channel": self.channel}


@keras.saving.register_keras_serializable(package="hepflow")
class MaskedSelfAttention(keras.layers.Layer):
    """A transformer encoder block over the real elements: ``[(batch, n, d), (batch, n, 1)]`` → ``(batch, n, d)``.

    Multi-head self-attention in which no element attends to padding, then a feed-forward layer,
    each with a residual connection and layer normalization (post-norm); padding stays zero.

    Args:
        heads: Attention heads (default 4).
        key_dim: Size of each head (default 16).
        feed_forward: Width of the feed-forward layer (default 64).
    """

    def __init__(self, *, heads: int = 4, key_dim: int = 16, feed_forward: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads, self.key_dim, self.feed_forward = heads, key_dim, feed_forward

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.attention = keras.layers.MultiHeadAttention(self.heads, self.key_dim)
        self.norm1, self.norm2 = keras.layers.LayerNormalization(), keras.layers.LayerNormalization()
        self.hidden = keras.layers.Dense(self.feed_forward, activation="relu")
        self.back = keras.layers.Dense(d)
        self.attention.build(input_shape[0], input_shape[0])
        self.norm1.build(input_shape[0])
        self.norm2.build(input_shape[0])
        self.hidden.build(input_shape[0])
        self.back.build((*input_shape[0][:-1], self.feed_forward))
        super().build(input_shape)

    def call(self, inputs):
        x, mask = inputs
        pair = ops.cast(ops.matmul(mask, ops.transpose(mask, (0, 2, 1))), "bool")  # both real
        # an event with one object still attends to itself; an empty slot attends to nothing real
        h = self.norm1(x + self.attention(x, x, attention_mask=pair))
        return self.norm2(h + self.back(self.hidden(h))) * mask

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "heads": self.heads, "key_dim": self.key_dim,
                "feed_forward": self.feed_forward}
