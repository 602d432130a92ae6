"""Topological clustering of calorimeter cells (the 4-2-0 scheme) as batched TF ops.

Cells whose energy exceeds ``seed`` noise σ start clusters; neighbours (the 8 around a cell in
its layer) above ``grow`` σ join and pass the growth on; cells above ``boundary`` σ next to a
cluster join without growing it (ATLAS, Eur. Phys. J. C 77 (2017) 490: 4, 2 and 0). Clusters
are the connected components of the growing cells that hold a seed, found by iterated
min-label propagation (a 3 × 3 min-pool per step, until nothing changes), batched over events.
Here each layer is clustered in its own cell grid (the CaloGAN layers have different
granularities, so cells are not stacked into a 3D lattice).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["topo_cluster_labels", "cluster_summaries"]

_NONE = np.int32(2**30)


def _min_pool3(x: tf.Tensor) -> tf.Tensor:
    return -tf.nn.max_pool2d(-x[..., None], ksize=3, strides=1, padding="SAME")[..., 0]


def topo_cluster_labels(energy: tf.Tensor, *, noise: float, seed: float = 4.0, grow: float = 2.0,
                        boundary: float = 0.0) -> tf.Tensor:
    """Cluster labels of the cells of one layer ``(batch, rows, cols)``.

    Args:
        energy: Cell energies.
        noise: The cells' noise σ (same units as ``energy``).
        seed, grow, boundary: Thresholds in σ. Defaults 4, 2, 0.

    Returns:
        ``(batch, rows, cols)`` int32: the label of each cell's cluster (the flat index of the
        cluster's first growing cell, unique within the event), −1 for cells in no cluster.
    """
    energy = tf.convert_to_tensor(energy, tf.float32)
    shape = tf.shape(energy)
    growing = energy > grow * noise
    seeds = energy > seed * noise
    index = tf.reshape(tf.range(shape[1] * shape[2], dtype=tf.int32), [1, shape[1], shape[2]])
    labels = tf.where(growing, tf.broadcast_to(index, shape), _NONE)

    def spread(current):
        return tf.where(growing, tf.minimum(current, tf.cast(_min_pool3(tf.cast(current, tf.float32)), tf.int32)),
                        _NONE)

    def not_done(previous, current):
        return tf.reduce_any(tf.not_equal(previous, current))

    _, labels = tf.while_loop(not_done, lambda _, cur: (cur, spread(cur)), (labels, spread(labels)),
                              maximum_iterations=tf.cast(shape[1] * shape[2], tf.int32))
    # keep the components that hold a seed: the largest seed flag per (event, label)
    flat = tf.reshape(labels, [shape[0], -1])
    seeded_cells = tf.reshape(tf.cast(seeds, tf.int32), [shape[0], -1])
    n = shape[1] * shape[2]
    segment = tf.where(flat < _NONE, flat + tf.range(shape[0])[:, None] * n, shape[0] * n)
    has_seed = tf.math.unsorted_segment_max(tf.reshape(seeded_cells, [-1]), tf.reshape(segment, [-1]),
                                            num_segments=shape[0] * n + 1)
    keep = tf.reshape(tf.gather(has_seed, segment) > 0, tf.shape(labels))
    labels = tf.where(keep, labels, _NONE)
    # boundary cells next to a cluster join the neighbouring cluster with the lowest label
    near = tf.cast(_min_pool3(tf.cast(labels, tf.float32)), tf.int32)
    attach = (labels == _NONE) & (energy > boundary * noise) & (near < _NONE)
    labels = tf.where(attach, near, labels)
    return tf.where(labels < _NONE, labels, -tf.ones_like(labels))


def cluster_summaries(energy: tf.Tensor, labels: tf.Tensor, *, max_clusters: int = 4) -> tf.Tensor:
    """The ``max_clusters`` most energetic clusters of each event: ``(batch, max_clusters, 4)`` with
    energy, energy-weighted row and column, and cell count (zeros: no cluster)."""
    energy = tf.convert_to_tensor(energy, tf.float32)
    shape = tf.shape(energy)
    n = shape[1] * shape[2]
    rows = tf.cast(tf.reshape(tf.repeat(tf.range(shape[1]), shape[2]), [1, -1]), tf.float32)
    cols = tf.cast(tf.reshape(tf.tile(tf.range(shape[2]), [shape[1]]), [1, -1]), tf.float32)
    flat_e = tf.reshape(energy, [shape[0], -1])
    flat_l = tf.reshape(labels, [shape[0], -1])
    segment = tf.reshape(tf.where(flat_l >= 0, flat_l + tf.range(shape[0])[:, None] * n, shape[0] * n), [-1])
    m = shape[0] * n + 1
    e = tf.math.unsorted_segment_sum(tf.reshape(tf.where(flat_l >= 0, flat_e, 0.0), [-1]), segment, m)
    er = tf.math.unsorted_segment_sum(tf.reshape(flat_e * rows, [-1]), segment, m)
    ec = tf.math.unsorted_segment_sum(tf.reshape(flat_e * cols, [-1]), segment, m)
    cells = tf.math.unsorted_segment_sum(tf.ones_like(segment, tf.float32), segment, m)
    per_event = [tf.reshape(v[:-1], [shape[0], n]) for v in (e, er, ec, cells)]
    top, idx = tf.math.top_k(per_event[0], k=max_clusters)
    safe = tf.maximum(top, 1e-9)
    row = tf.gather(per_event[1], idx, batch_dims=1) / safe
    col = tf.gather(per_event[2], idx, batch_dims=1) / safe
    count = tf.gather(per_event[3], idx, batch_dims=1)
    valid = top > 0
    zero = tf.zeros_like(top)
    return tf.stack([tf.where(valid, top, zero), tf.where(valid, row, zero), tf.where(valid, col, zero),
                     tf.where(valid, count, zero)], axis=-1)
