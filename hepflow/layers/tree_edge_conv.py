"""EdgeConv on the nodes of a jet's clustering tree, its edges the tree's own (LundNet, Dreyer &
Qu, arXiv:2012.08526)."""
from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["TreeNeighbours", "TreeEdgeConv"]

N_LEAVES = 200  # the tree layout of hepflow.physics.jet_trees


@keras.saving.register_keras_serializable(package="hepflow")
class TreeNeighbours(keras.layers.Layer):
    """The internal-node neighbours of every internal node: its parent and its internal children.

    Call argument: ``tree (batch, m, 2)`` int (hepflow.physics.jet_trees layout) →
    ``(batch, m, 3)`` int32 indices of internal nodes, ``-1`` where there is none.
    """

    def call(self, tree):
        tree = ops.cast(tree, "int32")
        m = ops.shape(tree)[1]
        inner = ops.where(tree >= N_LEAVES, tree - N_LEAVES, -1)  # (b, m, 2) internal children
        # parent[b, c] = k where c is an internal child of k: compare every node with every child slot
        node = ops.arange(m, dtype="int32")
        is_child = ops.equal(inner[:, None, :, :], node[None, :, None, None])  # (b, m_child, m_parent, 2)
        has_parent = ops.any(ops.any(is_child, axis=-1), axis=-1)
        parent = ops.argmax(ops.cast(ops.any(is_child, axis=-1), "int32"), axis=-1)
        parent = ops.where(has_parent, ops.cast(parent, "int32"), -1)
        return ops.concatenate([parent[..., None], inner], axis=-1)


@keras.saving.register_keras_serializable(package="hepflow")
class TreeEdgeConv(keras.layers.Layer):
    """One EdgeConv block over fixed neighbours: ``mean_j MLP(x_i, x_j − x_i)`` over the valid
    neighbours ``j`` of node ``i``, plus a linear shortcut of ``x_i``, ReLU; padded nodes give 0.

    Args:
        channels: Widths of the edge MLP (LundNet: (32, 32), (32, 32), (64, 64), (64, 64),
            (128, 128), (128, 128) over six blocks).

    Call arguments: ``[x (batch, m, c), neighbours (batch, m, k) int (-1: none), mask (batch, m, 1)]``.
    """

    def __init__(self, *, channels: Sequence[int] = (32, 32), **kwargs) -> None:
        super().__init__(**kwargs)
        if not channels:
            raise ValueError("TreeEdgeConv needs at least one channel. Received: channels=()")
        self.channels = tuple(int(c) for c in channels)
        self.mlp = [keras.layers.Dense(c, activation="relu") for c in self.channels]
        self.shortcut = keras.layers.Dense(self.channels[-1], use_bias=False)

    def build(self, input_shape):
        c = input_shape[0][-1]
        width = 2 * c
        for dense, out in zip(self.mlp, self.channels):
            dense.build((None, None, None, width))
            width = out
        self.shortcut.build((None, None, c))

    def get_config(self):
        return {**super().get_config(), "channels": list(self.channels)}

    def call(self, inputs):
        x, neighbours, mask = inputs
        neighbours = ops.cast(neighbours, "int32")
        valid = ops.cast(neighbours >= 0, x.dtype)[..., None]  # (b, m, k, 1)
        xj = _gather_rows(x, ops.maximum(neighbours, 0))
        xi = ops.broadcast_to(x[:, :, None, :], ops.shape(xj))
        e = ops.concatenate([xi, xj - xi], axis=-1)
        for dense in self.mlp:
            e = dense(e)
        agg = ops.sum(e * valid, axis=2) / ops.maximum(ops.sum(valid, axis=2), 1.0)
        return ops.relu(agg + self.shortcut(x)) * mask


def _gather_rows(x, index):
    """``x[b, index[b, i, j]]`` for ``x (b, m, c)`` and ``index (b, m, k)`` → ``(b, m, k, c)``."""
    b, m, k = ops.shape(index)[0], ops.shape(index)[1], ops.shape(index)[2]
    flat = ops.reshape(index, (b, m * k))
    got = ops.take_along_axis(x, ops.broadcast_to(flat[..., None], (b, m * k, ops.shape(x)[-1])), axis=1)
    return ops.reshape(got, (b, m, k, ops.shape(x)[-1]))
