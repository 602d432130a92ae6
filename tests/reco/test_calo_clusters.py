"""4-2-0 topological clustering against hand-made cell grids and simulated showers."""
from __future__ import annotations

import numpy as np
import pytest

from hepflow.ops.calo_clusters import cluster_summaries, topo_cluster_labels
from hepflow.physics.calo_sim import simulate
from hepflow.reco import calo_cluster_graph


def test_seeds_grow_through_neighbours_and_boundary_cells_attach():
    e = np.zeros((1, 6, 8), np.float32)
    e[0, 1, 1], e[0, 1, 2], e[0, 2, 2] = 5.0, 2.5, 2.5  # a seed, two growing neighbours
    e[0, 3, 3] = 0.5  # a boundary cell touching the growing (2, 2)
    e[0, 5, 7] = 3.0  # growing but no seed in its component: no cluster
    e[0, 1, 6], e[0, 2, 6] = 4.5, 0.3  # a second seed with a boundary cell
    labels = topo_cluster_labels(e, noise=1.0).numpy()[0]
    first = labels[1, 1]
    assert first >= 0 and labels[1, 2] == labels[2, 2] == labels[3, 3] == first
    assert labels[5, 7] == -1 and labels[0, 0] == -1
    assert labels[1, 6] == labels[2, 6] != first
    clusters = cluster_summaries(e, labels[None], max_clusters=3).numpy()[0]
    np.testing.assert_allclose(clusters[0], [10.5, (5 + 2.5 + 2 * 2.5 + 3 * 0.5) / 10.5,
                                             (5 + 2 * 2.5 + 2 * 2.5 + 3 * 0.5) / 10.5, 4], rtol=1e-5)
    np.testing.assert_allclose(clusters[1], [4.8, (4.5 + 2 * 0.3) / 4.8, 6.0, 2], rtol=1e-5)
    assert np.all(clusters[2] == 0)


def test_the_cluster_graph_keeps_most_of_a_simulated_shower():
    showers = simulate("eplus", 20, seed=3, energies=np.full(20, 20.0))
    graph = calo_cluster_graph()
    out = graph.run({k: showers[k] for k in ("layer_0", "layer_1", "layer_2")})
    deposited = sum(showers[k].sum(axis=(1, 2)) for k in ("layer_0", "layer_1", "layer_2"))
    fraction = out["clustered_energy"].numpy() / deposited
    assert np.all(fraction <= 1 + 1e-5) and np.median(fraction) > 0.9
    lead = out["clusters_1"].numpy()[:, 0]
    assert np.all(lead[:, 0] > 0) and np.all((lead[:, 1] >= 0) & (lead[:, 1] < 12))
    assert graph.describe().count("[tf]") == 7
    with pytest.raises(Exception):
        graph.run({"layer_0": showers["layer_0"]})
