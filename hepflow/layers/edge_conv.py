"""EdgeConv (Wang et al., "Dynamic Graph CNN", arXiv:1801.07829) as used in ParticleNet."""
from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["EdgeConv"]


@keras.saving.register_keras_serializable(package="hepflow")
class EdgeConv(keras.layers.Layer):
    """One EdgeConv block of ParticleNet (Qu & Gouskos, arXiv:1902.08570).

    For each particle i, find its k nearest neighbours j in ``points`` (padding excluded),
    build edge features ``(x_i, x_j - x_i)``, pass them through a shared MLP (linear → batch
    norm → ReLU per layer), average over the k edges, add a linear+BN shortcut of ``x_i``,
    and apply ReLU. Padded particles output zeros.

    Args:
        k: Neighbours per particle (ParticleNet: 16; Lite: 7).
        channels: Widths of the edge MLP (ParticleNet: (64, 64, 64), (128, 128, 128),
            (256, 256, 256); Lite: (32, 32, 32), (64, 64, 64)).

    Call arguments: ``[points (batch, n, d), features (batch, n, c), mask (batch, n, 1)]``.
    """

    def __init__(self, *, k: int = 16, channels: Sequence[int] = (64, 64, 64), **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_jit = False  # the real-particle selection has a data-dependent shape
        if k < 1 or not channels:
            raise ValueError(f"EdgeConv needs k ≥ 1 and at least one channel. Received: k={k}, channels={channels}")
        self.k = int(k)
        self.channels = tuple(int(c) for c in channels)
        self.mlp = [keras.layers.Dense(c, use_bias=False) for c in self.channels]
        self.norms = [keras.layers.BatchNormalization(synchronized=True) for _ in self.channels]
        self.shortcut = keras.layers.Dense(self.channels[-1], use_bias=False)
        self.shortcut_norm = keras.layers.BatchNormalization(synchronized=True)

    def build(self, input_shape):
        _, feat_shape, _ = input_shape
        c = feat_shape[-1]
        edge_dim = 2 * c
        for dense, norm, width in zip(self.mlp, self.norms, self.channels):
            dense.build((None, None, edge_dim))
            norm.build((None, None, width))
            edge_dim = width
        self.shortcut.build((None, None, c))
        self.shortcut_norm.build((None, None, self.channels[-1]))

    def call(self, inputs, training=None):
        points, x, mask = inputs
        n = ops.shape(points)[1]
        # squared distances, padded particles pushed far away (and never their own neighbour)
        sq = ops.sum(points * points, axis=-1, keepdims=True)
        d = sq - 2 * ops.matmul(points, ops.transpose(points, (0, 2, 1))) + ops.transpose(sq, (0, 2, 1))
        far = (1.0 - ops.transpose(mask, (0, 2, 1))) * 1e9
        d = d + far + ops.eye(n, dtype=d.dtype)[None] * 1e9
        k = ops.minimum(self.k, n - 1) if isinstance(n, int) else self.k
        _, idx = ops.top_k(-d, k=k)  # (batch, n, k)
        # The first MLP layer acts on (x_i, x_j - x_i) with kernel [W_i; W_d]; it equals
        # x_i (W_i - W_d) + x_j W_d, so both terms are computed once per particle and only the
        # neighbour term is gathered: n instead of n·k products of the widest matrix.
        c = ops.shape(x)[-1]
        kernel = self.mlp[0].kernel
        own = ops.matmul(x, kernel[:c] - kernel[c:])               # (batch, n, c1)
        other = ops.matmul(x, kernel[c:])                            # (batch, n, c1)
        # edges of real particles only (padding is ~half the slots): (m, k, c1), m real particles
        c1, c_out = self.channels[0], self.channels[-1]
        offsets = ops.reshape(ops.arange(ops.shape(x)[0], dtype=idx.dtype) * ops.cast(n, idx.dtype), (-1, 1, 1))
        real = ops.nonzero(ops.reshape(mask, (-1,)) > 0)[0]
        neighbour_rows = ops.take(ops.reshape(idx + offsets, (-1, k)), real, axis=0)
        h = ops.take(ops.reshape(other, (-1, c1)), neighbour_rows, axis=0)
        h = h + ops.expand_dims(ops.take(ops.reshape(own, (-1, c1)), real, axis=0), 1)
        h = ops.relu(self.norms[0](h, training=training))
        for dense, norm in zip(self.mlp[1:], self.norms[1:]):
            h = ops.relu(norm(dense(h), training=training))
        h = ops.scatter(ops.expand_dims(real, 1), ops.mean(h, axis=1), (ops.shape(x)[0] * n, c_out))
        h = ops.reshape(h, (-1, n, c_out))
        out = ops.relu(h + self.shortcut_norm(self.shortcut(x), training=training))
        return out * mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:-1]) + (self.channels[-1],)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "channels": list(self.channels)}
