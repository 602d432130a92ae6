"""A per-jet recursive evaluation of :class:`hepflow.layers.GatedTreeEmbedding` in numpy.

It walks each tree from the root down, one jet at a time, the way the original recursive
networks evaluated trees; tests check the batched layer against it and
``tools/bench_recnn.py`` times both.
"""
from __future__ import annotations

import numpy as np

__all__ = ["recursive_embedding"]

N_LEAVES = 200


def _features(p: np.ndarray, jet: np.ndarray) -> np.ndarray:
    def kin(q):
        pt = np.hypot(q[1], q[2])
        return q[0], pt, np.arcsinh(q[3] / max(pt, 1e-6)), np.arctan2(q[2], q[1])

    e, pt, eta, phi = kin(p)
    je, jpt, jeta, jphi = kin(jet)
    deta = eta - jeta
    dphi = (phi - jphi + np.pi) % (2 * np.pi) - np.pi
    log = lambda x: np.log(max(x, 1e-6))  # noqa: E731 -- local shorthand
    return np.array([log(pt), log(e), deta, dphi, log(pt / max(jpt, 1e-6)), log(e / max(je, 1e-6)),
                     np.hypot(deta, dphi)], np.float64)


def recursive_embedding(layer, constituents: np.ndarray, tree: np.ndarray) -> np.ndarray:
    """``(batch, units)`` root embeddings, computed jet by jet with a Python recursion."""
    w = {d.name: [np.asarray(v, np.float64) for v in d.get_weights()] for d in
         ([layer.u, layer.h] + ([layer.r, layer.z] if layer.gated else []))}
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    dense = lambda name, x: x @ w[name][0] + w[name][1]  # noqa: E731
    units = layer.units
    out = np.zeros((len(constituents), units))
    for j, (p4, children) in enumerate(zip(constituents.astype(np.float64), tree.astype(np.int64))):
        jet = p4.sum(axis=0)
        n = int((p4[:, 0] > 0).sum())

        def embed(node):
            if node < N_LEAVES:
                return p4[node], relu(dense("u", _features(p4[node], jet)))
            (pl, hl), (pr, hr) = embed(children[node - N_LEAVES, 0]), embed(children[node - N_LEAVES, 1])
            p = pl + pr
            u = relu(dense("u", _features(p, jet)))
            if not layer.gated:
                return p, relu(dense("h", np.concatenate([hl, hr, u])))
            r = 1 / (1 + np.exp(-dense("r", np.concatenate([hl, hr, u]))))
            cand = relu(dense("h", np.concatenate([r[:units] * hl, r[units:2 * units] * hr, r[2 * units:] * u])))
            z = dense("z", np.concatenate([cand, hl, hr, u])).reshape(4, units)
            z = np.exp(z - z.max(axis=0))
            z /= z.sum(axis=0)
            return p, z[0] * cand + z[1] * hl + z[2] * hr + z[3] * u

        out[j] = embed(N_LEAVES + n - 2 if n >= 2 else 0)[1]
    return out
