"""Taggers on jets as trees, graphs and sequences.

* :func:`recnn_tagger` — the gated recursive network on a clustering tree (Louppe et al.,
  arXiv:1702.00748; trees ``tree_ca``/``tree_kt``/``tree_antikt``/``tree_desc_pt`` of
  :mod:`hepflow.physics.jet_trees`);
* :func:`lundnet` — EdgeConv over the C/A tree's nodes with their Lund coordinates (Dreyer & Qu,
  arXiv:2012.08526);
* :func:`mpnn_tagger` — message passing with a learned adjacency over the constituents
  (Henrion et al., DLPS 2017);
* :func:`gru_tagger` — a GRU over the pT-ordered constituents.

Every model takes ``num_classes`` (1: one sigmoid score; K > 1: a softmax over K classes).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from hepflow.layers import (GatedTreeEmbedding, LearnedAdjacencyMessagePassing, MaskedAverage, MaskedSum,
                            TreeEdgeConv, TreeNeighbours)

__all__ = ["recnn_tagger", "lundnet", "mpnn_tagger", "gru_tagger"]


def _head(h, num_classes: int, dense: Sequence[int] = (64, 64)):
    for i, w in enumerate(dense):
        h = keras.layers.Dense(w, activation="relu", name=f"dense_{i}")(h)
    act = "sigmoid" if num_classes == 1 else "softmax"
    return keras.layers.Dense(num_classes, activation=act, name="score")(h)


def recnn_tagger(*, units: int = 40, gated: bool = True, dense: Sequence[int] = (40, 40),
                 num_classes: int = 1) -> keras.Model:
    """The (gated) RecNN: the root embedding of ``tree`` over ``constituents`` → a small MLP.

    Inputs: ``constituents`` (batch, 200, 4) (E, px, py, pz, pT-ordered, zero-padded) and
    ``tree`` (batch, 199, 2) (map it from ``tree_ca``, ``tree_kt``, ``tree_antikt`` or
    ``tree_desc_pt`` in the sample keys). The paper classifies the root embedding with two
    hidden layers of 40 ReLUs.
    """
    constituents = keras.Input((200, 4), name="constituents")
    tree = keras.Input((199, 2), dtype="int16", name="tree")
    h = GatedTreeEmbedding(units=units, gated=gated, name="recnn")([constituents, tree])
    return keras.Model({"constituents": constituents, "tree": tree}, _head(h, num_classes, dense),
                       name="recnn_gated" if gated else "recnn")


@keras.saving.register_keras_serializable(package="hepflow")
class NodeMask(keras.layers.Layer):
    """``(batch, m, 1)`` float mask of the valid tree nodes (``tree[..., 0] ≥ 0``)."""

    def call(self, tree):
        return ops.cast(ops.cast(tree[..., :1], "int32") >= 0, "float32")


@keras.saving.register_keras_serializable(package="hepflow")
class ParticleMask(keras.layers.Layer):
    """``(batch, n)`` bool mask of real particles from a float ``(batch, n, 1)`` mask."""

    def call(self, mask):
        return mask[..., 0] > 0


def lundnet(*, blocks: Sequence[Sequence[int]] = ((32, 32), (64, 64), (128, 128)), dense: Sequence[int] = (128,),
            num_classes: int = 1) -> keras.Model:
    """LundNet: EdgeConv blocks over the C/A tree nodes with ``lund`` features, pooled.

    Inputs: ``lund`` (batch, 199, 5) (ln kT, ln Δ, ln z, ln m, ψ) and ``tree`` (batch, 199, 2)
    (``tree_ca``). The paper's LundNet-5 uses six blocks (32, 32, 64, 64, 128, 128) and a 256-wide
    dense layer; the default here is a lighter three-block version.
    """
    lund = keras.Input((199, 5), name="lund")
    tree = keras.Input((199, 2), dtype="int16", name="tree")
    mask = NodeMask(name="node_mask")(tree)
    neighbours = TreeNeighbours(name="neighbours")(tree)
    h = lund
    for i, channels in enumerate(blocks):
        h = TreeEdgeConv(channels=channels, name=f"edge_conv_{i}")([h, neighbours, mask])
    pooled = MaskedAverage(name="pool")([h, mask])
    return keras.Model({"lund": lund, "tree": tree}, _head(pooled, num_classes, dense), name="lundnet")


def mpnn_tagger(*, n_particles: int = 100, n_features: int = 7, units: int = 64, iterations: int = 2,
                dense: Sequence[int] = (64, 64), num_classes: int = 1) -> keras.Model:
    """Message passing with a learned, directed adjacency over ``particles`` (with ``mask``), summed.

    Inputs as the PFN's: ``particles`` (batch, n, n_features) and ``mask`` (batch, n, 1) from
    ``constituent_features``.
    """
    particles = keras.Input((n_particles, n_features), name="particles")
    mask = keras.Input((n_particles, 1), name="mask")
    h = keras.layers.Dense(units, activation="relu", name="embed")(particles)
    h = LearnedAdjacencyMessagePassing(units=units, iterations=iterations, name="mpnn")([h, mask])
    pooled = MaskedSum(name="readout")([h, mask])
    return keras.Model({"particles": particles, "mask": mask}, _head(pooled, num_classes, dense), name="mpnn")


def gru_tagger(*, n_particles: int = 100, n_features: int = 7, units: int = 64, dense: Sequence[int] = (64,),
               num_classes: int = 1) -> keras.Model:
    """A GRU over the pT-ordered ``particles`` (padding masked), its last state classified."""
    particles = keras.Input((n_particles, n_features), name="particles")
    mask = keras.Input((n_particles, 1), name="mask")
    h = keras.layers.GRU(units, name="gru")(particles, mask=ParticleMask(name="to_bool")(mask))
    return keras.Model({"particles": particles, "mask": mask}, _head(h, num_classes, dense), name="gru")
