"""Topological clustering of CaloGAN-geometry showers as a :class:`~hepflow.reco.RecoGraph`.

Inputs ``layer_0``/``layer_1``/``layer_2`` (cell energies, GeV, in :data:`CALOGAN_LAYERS`
grids); per layer, in parallel branches: 4-2-0 cluster labels (:mod:`hepflow.ops.calo_clusters`)
and the most energetic clusters (energy, energy-weighted row and column, cell count); then the
clustered energy of the shower.
"""
from __future__ import annotations

import tensorflow as tf

from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.ops.calo_clusters import cluster_summaries, topo_cluster_labels
from hepflow.reco.graph import RecoGraph, Step

__all__ = ["calo_cluster_graph"]


class _Clusterer:
    """The per-layer steps with their settings (``get_config`` for cache fingerprints)."""

    def __init__(self, noise: float, seed: float, grow: float, boundary: float, max_clusters: int):
        self.noise, self.seed, self.grow, self.boundary = float(noise), float(seed), float(grow), float(boundary)
        self.max_clusters = int(max_clusters)

    def labels(self, energy):
        return topo_cluster_labels(energy, noise=self.noise, seed=self.seed, grow=self.grow, boundary=self.boundary)

    def clusters(self, energy, labels):
        return cluster_summaries(energy, labels, max_clusters=self.max_clusters)

    @staticmethod
    def clustered_energy(*layers):
        return tf.add_n([tf.reduce_sum(c[..., 0], axis=-1) for c in layers])

    def get_config(self) -> dict:
        return {"noise": self.noise, "seed": self.seed, "grow": self.grow, "boundary": self.boundary,
                "max_clusters": self.max_clusters}


def calo_cluster_graph(*, noise: float = 0.01, seed: float = 4.0, grow: float = 2.0, boundary: float = 0.0,
                       max_clusters: int = 4, outputs=None) -> RecoGraph:
    """4-2-0 topological clustering of each CaloGAN layer.

    Args:
        noise: Cell noise σ in GeV. Default 0.01 (10 MeV, the scale of LAr EM cell noise). The
            simulated showers carry no noise, so the thresholds act as energy cuts (40, 20, 0 MeV).
        seed, grow, boundary: Thresholds in σ. Defaults 4, 2, 0.
        max_clusters: Clusters kept per layer and event, most energetic first. Default 4.
        outputs: Products returned. Default ``clusters_0`` … ``clusters_2`` (``(max_clusters,
            4)``: energy, row, column, cells) and ``clustered_energy``.

    Products also include ``cluster_labels_<k>`` (the cells' cluster labels, −1 outside).
    """
    c = _Clusterer(noise, seed, grow, boundary, max_clusters)
    steps = []
    for k, layer in enumerate(CALOGAN_LAYERS):
        steps += [Step(f"topo_labels_{k}", c.labels, [layer], [f"cluster_labels_{k}"]),
                  Step(f"clusters_{k}", c.clusters, [layer, f"cluster_labels_{k}"], [f"clusters_{k}"],
                       specs={f"clusters_{k}": ((max_clusters, 4), "float32")})]
    steps.append(Step("clustered_energy", c.clustered_energy, [f"clusters_{k}" for k in range(len(CALOGAN_LAYERS))],
                      ["clustered_energy"]))
    return RecoGraph(steps, inputs={name: (shape, "float32") for name, shape in CALOGAN_LAYERS.items()},
                     outputs=outputs if outputs is not None else
                     [f"clusters_{k}" for k in range(len(CALOGAN_LAYERS))] + ["clustered_energy"],
                     keep_inputs=True, name="calo_clusters")
