"""A jet's clustering history as fixed-size arrays, and its Lund-plane declusterings.

Trees are binary: for ``n`` leaves (the jet's kept constituents, in pT order) there are
``n - 1`` internal nodes, listed in clustering order, so children always come before their
parent and the last internal node is the root. ``children[k] = (a, b)`` names the two children of
internal node ``k``: a value ``< N_LEAVES`` is a leaf (constituent index), ``N_LEAVES + j`` is
internal node ``j``; the harder child (higher pT) comes first. Rows past ``n - 1`` are ``-1``.

Algorithms: ``ca`` (Cambridge/Aachen), ``kt``, ``antikt`` reclustering of the constituents with
FastJet (a radius large enough to merge everything), and ``desc_pt``, the chain of the
QCD-aware recursive networks paper (Louppe et al., arXiv:1702.00748) adding constituents in
decreasing pT.

The Lund features of every internal node of the C/A tree, with ``a`` the harder and ``b`` the
softer child (Dreyer, Salam, Soyez, arXiv:1807.04758; LundNet, arXiv:2012.08526):
``(ln kT, ln Δ, ln z, ln m, ψ)`` with ``Δ`` the rapidity–azimuth distance of the children,
``kT = pT_b Δ``, ``z = pT_b / (pT_a + pT_b)``, ``m`` the node's mass and ``ψ = atan2(y_b − y_a,
φ_b − φ_a)``; ``primary`` flags the nodes met following the harder branch from the root (the
primary Lund plane).
"""
from __future__ import annotations

import numpy as np

__all__ = ["N_LEAVES", "TREE_ALGORITHMS", "cluster_children", "desc_pt_children", "node_momenta", "lund_features",
           "primary_nodes", "jet_tree_arrays"]

N_LEAVES = 200
TREE_ALGORITHMS = ("ca", "kt", "antikt", "desc_pt")
_RECLUSTER_R = 10.0  # larger than any jet: every constituent ends in one tree


def cluster_children(fastjet, four_momenta: np.ndarray, algorithm: str) -> np.ndarray:
    """``(n - 1, 2)`` children of the internal nodes when FastJet reclusters ``(n, 4)`` (E, px, py, pz).

    Raises:
        ValueError: an unknown algorithm, or constituents that do not end in one tree.
    """
    algs = {"ca": fastjet.cambridge_algorithm, "kt": fastjet.kt_algorithm, "antikt": fastjet.antikt_algorithm}
    if algorithm not in algs:
        raise ValueError(f"algorithm must be one of {sorted(algs)}. Received: {algorithm!r}")
    n = len(four_momenta)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    pjs = []
    for e, px, py, pz in four_momenta.astype(np.float64):
        pjs.append(fastjet.PseudoJet(float(px), float(py), float(pz), float(e)))
    cs = fastjet.ClusterSequence(pjs, fastjet.JetDefinition(algs[algorithm], _RECLUSTER_R))
    jets = cs.inclusive_jets()
    if len(jets) != 1:
        raise ValueError(f"reclustering left {len(jets)} jets; expected one")
    children = np.full((n - 1, 2), -1, np.int64)
    stack = [jets[0]]
    while stack:
        node = stack.pop()
        a, b = fastjet.PseudoJet(), fastjet.PseudoJet()
        if not node.has_parents(a, b):
            continue
        if b.pt2() > a.pt2():
            a, b = b, a
        k = node.cluster_hist_index() - n
        children[k] = [_node_id(a.cluster_hist_index(), n), _node_id(b.cluster_hist_index(), n)]
        stack += [a, b]
    return children


def _node_id(hist: int, n: int) -> int:
    return hist if hist < n else N_LEAVES + hist - n


def desc_pt_children(n: int) -> np.ndarray:
    """The desc-pT chain: node 0 joins constituents 0 and 1, node k joins node k - 1 and constituent k + 1."""
    if n < 2:
        return np.zeros((0, 2), np.int64)
    children = np.empty((n - 1, 2), np.int64)
    children[0] = (0, 1)
    children[1:, 0] = N_LEAVES + np.arange(n - 2)
    children[1:, 1] = np.arange(2, n)
    return children


def node_momenta(leaves: np.ndarray, children: np.ndarray) -> np.ndarray:
    """(n - 1, 4) four-momenta of the internal nodes (sums of their leaves)."""
    out = np.zeros((len(children), 4), np.float64)
    for k, (a, b) in enumerate(children):  # children come before parents
        out[k] = (leaves[a] if a < N_LEAVES else out[a - N_LEAVES]) + (leaves[b] if b < N_LEAVES else out[b - N_LEAVES])
    return out


def _pt_y_phi(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    pt = np.hypot(px, py)
    y = 0.5 * np.log(np.maximum(e + pz, 1e-12) / np.maximum(e - pz, 1e-12))
    return pt, y, np.arctan2(py, px)


def lund_features(leaves: np.ndarray, children: np.ndarray) -> np.ndarray:
    """(n - 1, 5) ``(ln kT, ln Δ, ln z, ln m, ψ)`` of every internal node (children as in :func:`cluster_children`)."""
    nodes = node_momenta(leaves, children)

    def mom(i):
        return np.where((i < N_LEAVES)[:, None], leaves[np.minimum(i, len(leaves) - 1)],
                        nodes[np.maximum(i - N_LEAVES, 0)])

    a, b = mom(children[:, 0]), mom(children[:, 1])
    pta, ya, phia = _pt_y_phi(a)
    ptb, yb, phib = _pt_y_phi(b)
    dphi = (phib - phia + np.pi) % (2 * np.pi) - np.pi
    delta = np.hypot(yb - ya, dphi)
    m2 = nodes[:, 0] ** 2 - np.sum(nodes[:, 1:] ** 2, axis=1)
    with np.errstate(divide="ignore"):
        out = np.stack([np.log(np.maximum(ptb * delta, 1e-6)), np.log(np.maximum(delta, 1e-6)),
                        np.log(np.maximum(ptb / np.maximum(pta + ptb, 1e-12), 1e-6)),
                        np.log(np.maximum(np.sqrt(np.maximum(m2, 0)), 1e-6)), np.arctan2(yb - ya, dphi)], axis=1)
    return out


def primary_nodes(children: np.ndarray) -> np.ndarray:
    """Bool (n - 1,): the internal nodes on the harder branch from the root."""
    out = np.zeros(len(children), bool)
    k = len(children) - 1
    while k >= 0:
        out[k] = True
        a = children[k, 0]
        k = a - N_LEAVES if a >= N_LEAVES else -1
    return out


def jet_tree_arrays(fastjet, leaves: np.ndarray) -> dict[str, np.ndarray]:
    """Every tree of one jet and its C/A Lund features, padded to ``N_LEAVES - 1`` internal nodes.

    Args:
        leaves: ``(n, 4)`` (E, px, py, pz) of the kept constituents in pT order (n ≤ N_LEAVES).

    Returns:
        ``tree_<alg>`` (199, 2) int16 for each of :data:`TREE_ALGORITHMS`, ``lund`` (199, 5)
        float32 (C/A nodes) and ``lund_primary`` (199,) bool.
    """
    n = len(leaves)
    out = {}
    for alg in TREE_ALGORITHMS:
        ch = desc_pt_children(n) if alg == "desc_pt" else cluster_children(fastjet, leaves, alg)
        padded = np.full((N_LEAVES - 1, 2), -1, np.int16)
        padded[:len(ch)] = ch
        out[f"tree_{alg}"] = padded
        if alg == "ca":
            lund = np.zeros((N_LEAVES - 1, 5), np.float32)
            primary = np.zeros(N_LEAVES - 1, bool)
            if len(ch):
                lund[:len(ch)] = lund_features(leaves.astype(np.float64), ch)
                primary[:len(ch)] = primary_nodes(ch)
            out["lund"], out["lund_primary"] = lund, primary
    return out
