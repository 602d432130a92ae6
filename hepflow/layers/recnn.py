"""The gated recursive embedding of a jet's clustering tree (Louppe, Cho, Becot, Cranmer,
"QCD-aware recursive neural networks for jet physics", arXiv:1702.00748), batched over trees.

TensorFlow ops (not backend-agnostic ``keras.ops``): the recursion runs as a ``tf.while_loop``
over tree *heights* — all internal nodes whose children are already embedded, across the whole
batch, are embedded in one step (gathered with ``tf.where``, written back with a scatter) — so a
batch of trees costs ``max height`` steps whatever the batch size, never a Python loop per jet.
"""
from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["GatedTreeEmbedding", "node_features"]

N_LEAVES = 200  # the tree layout of hepflow.physics.jet_trees


def node_features(p4: tf.Tensor, jet: tf.Tensor) -> tf.Tensor:
    """Seven features of nodes ``(..., 4)`` (E, px, py, pz) relative to their jet ``(batch, 4)``
    broadcast over the node axes: log pT, log E, Δη, Δφ, log pT/pT_jet, log E/E_jet, ΔR."""
    def kin(p):
        e, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
        pt = tf.sqrt(px * px + py * py)
        eta = tf.asinh(pz / tf.maximum(pt, 1e-6))
        return e, pt, eta, tf.atan2(py, px)

    e, pt, eta, phi = kin(p4)
    je, jpt, jeta, jphi = kin(jet)
    while len(je.shape) < len(e.shape):
        je, jpt, jeta, jphi = (tf.expand_dims(t, -1) for t in (je, jpt, jeta, jphi))
    deta = eta - jeta
    dphi = tf.math.floormod(phi - jphi + 3.141592653589793, 2 * 3.141592653589793) - 3.141592653589793
    log = lambda x: tf.math.log(tf.maximum(x, 1e-6))  # noqa: E731 -- local shorthand
    return tf.stack([log(pt), log(e), deta, dphi, log(pt / tf.maximum(jpt, 1e-6)), log(e / tf.maximum(je, 1e-6)),
                     tf.sqrt(deta * deta + dphi * dphi)], axis=-1)


@keras.saving.register_keras_serializable(package="hepflow")
class GatedTreeEmbedding(keras.layers.Layer):
    """Embeds every node of a binary tree from its children; returns the root's embedding.

    A node's own content ``u_k = ReLU(W_u f(p_k))`` comes from its four-momentum ``p_k`` (a
    constituent's, or the sum of its children's) through :func:`node_features`. An internal
    node with children embeddings ``h_L``, ``h_R`` (harder first) gets, as in the paper's gated
    variant: reset gates ``r = σ(W_r [h_L, h_R, u_k])``, a candidate ``h̃ = ReLU(W_h [r_L h_L,
    r_R h_R, r_N u_k])`` and ``h_k = z_H h̃ + z_L h_L + z_R h_R + z_N u_k`` with update weights
    ``z = softmax(W_z [h̃, h_L, h_R, u_k])`` over the four terms.

    Args:
        units: Embedding width (the paper: 40).
        gated: The gated variant (the paper's best); ``False`` gives
            ``h_k = ReLU(W_h [h_L, h_R, u_k])``.

    Call arguments: ``[constituents (batch, 200, 4) (E, px, py, pz; zero-padded, pT-ordered),
    tree (batch, 199, 2) int (hepflow.physics.jet_trees layout)]`` → ``(batch, units)``.
    """

    def __init__(self, *, units: int = 40, gated: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_jit = False  # per-height node selections have data-dependent shapes
        if units < 1:
            raise ValueError(f"units must be ≥ 1. Received: units={units}")
        self.units, self.gated = int(units), bool(gated)
        self.u = keras.layers.Dense(self.units, activation="relu", name="u")
        self.h = keras.layers.Dense(self.units, activation="relu", name="h")
        if self.gated:
            self.r = keras.layers.Dense(3 * self.units, activation="sigmoid", name="r")
            self.z = keras.layers.Dense(4 * self.units, name="z")

    def build(self, input_shape):
        d = self.units
        self.u.build((None, 7))
        self.h.build((None, 3 * d))
        if self.gated:
            self.r.build((None, 3 * d))
            self.z.build((None, 4 * d))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "gated": self.gated}

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)

    def _combine(self, h_left, h_right, u):
        if not self.gated:
            return self.h(tf.concat([h_left, h_right, u], axis=-1))
        r = self.r(tf.concat([h_left, h_right, u], axis=-1))
        r_l, r_r, r_n = tf.split(r, 3, axis=-1)
        cand = self.h(tf.concat([r_l * h_left, r_r * h_right, r_n * u], axis=-1))
        z = self.z(tf.concat([cand, h_left, h_right, u], axis=-1))
        z = tf.nn.softmax(tf.reshape(z, [-1, 4, self.units]), axis=1)
        return z[:, 0] * cand + z[:, 1] * h_left + z[:, 2] * h_right + z[:, 3] * u

    def call(self, inputs):
        constituents, tree = inputs
        p4 = tf.cast(constituents, tf.float32)
        tree = tf.cast(tree, tf.int32)
        batch = tf.shape(p4)[0]
        real = p4[..., 0] > 0
        jet = tf.reduce_sum(p4, axis=1)
        # one flat table of the real nodes only: the leaves of every tree, then the internal nodes
        n_leaves = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
        n_inner = tf.maximum(n_leaves - 1, 0)
        leaf_off = tf.cumsum(n_leaves, exclusive=True)
        total_leaves = tf.reduce_sum(n_leaves)
        inner_off = total_leaves + tf.cumsum(n_inner, exclusive=True)
        leaf_p = tf.boolean_mask(p4, real)  # (b, i) order: real constituents come first in every row
        leaf_jet = tf.repeat(jet, n_leaves, axis=0)
        emb = tf.concat([self.u(node_features(leaf_p, leaf_jet)), tf.zeros([tf.reduce_sum(n_inner), self.units])], 0)
        mom = tf.concat([leaf_p, tf.zeros([tf.reduce_sum(n_inner), 4])], axis=0)
        child_row = tf.where(tree >= N_LEAVES, inner_off[:, None, None] + tree - N_LEAVES, leaf_off[:, None, None] + tree)
        valid = tree[..., 0] >= 0
        height = self._heights(tree, valid)

        def step(level, emb, mom):
            at = tf.where(tf.logical_and(valid, tf.equal(height, level)))  # (m, 2): tree, internal node
            b = tf.cast(at[:, 0], tf.int32)
            children = tf.gather_nd(child_row, at)
            p = tf.gather(mom, children[:, 0]) + tf.gather(mom, children[:, 1])
            u = self.u(node_features(p, tf.gather(jet, b)))
            h = self._combine(tf.gather(emb, children[:, 0]), tf.gather(emb, children[:, 1]), u)
            target = (tf.gather(inner_off, b) + tf.cast(at[:, 1], tf.int32))[:, None]
            return level + 1, tf.tensor_scatter_nd_update(emb, target, h), tf.tensor_scatter_nd_update(mom, target, p)

        top = tf.reduce_max(height)
        _, emb, _ = tf.while_loop(lambda level, *_: level <= top, step, (tf.constant(1), emb, mom),
                                  shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, self.units]),
                                                    tf.TensorShape([None, 4])))
        root = tf.where(n_leaves >= 2, inner_off + n_leaves - 2, leaf_off)  # a one-constituent jet is its leaf
        out = tf.gather(emb, tf.minimum(root, tf.shape(emb)[0] - 1))
        return tf.where((n_leaves > 0)[:, None], out, 0.0)  # an empty row (no constituent) embeds to zero

    @staticmethod
    def _heights(tree: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """Height of every internal node (1 for two leaves), by fixed-point iteration over the batch."""
        inner = tree - N_LEAVES  # < 0 for leaves (and padding)
        batch_idx = tf.range(tf.shape(tree)[0])[:, None, None] * tf.ones_like(tree)

        def child_height(h):
            idx = tf.stack([batch_idx, tf.maximum(inner, 0)], axis=-1)
            return tf.where(inner >= 0, tf.gather_nd(h, idx), 0)

        def body(h, _):
            new = tf.where(valid, 1 + tf.reduce_max(child_height(h), axis=-1), 0)
            return new, tf.reduce_any(new != h)

        h0 = tf.where(valid, tf.ones_like(tree[..., 0]), 0)
        h, _ = tf.while_loop(lambda h, changed: changed, body, (h0, tf.constant(True)))
        return h
