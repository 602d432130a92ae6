#!/usr/bin/env python
"""Benchmark: the batched gated RecNN against a per-jet recursive evaluation of the same network.

Reads jets with trees (``hepflow generate jets --trees``; default ``data/jets5``, top and QCD files),
embeds them with :class:`hepflow.layers.GatedTreeEmbedding` (one ``tf.function`` call per batch,
a ``tf.while_loop`` over tree heights) and with the per-jet Python recursion of
:mod:`hepflow.testing.recnn_reference` (the way the original RecNN code walks each tree), with the
same weights, checks that both agree, and prints jets/s for each tree algorithm plus one JSON line:
``speedup_vs_per_jet`` (C/A trees, batch 1024), per algorithm and batch size beside it.
Usage: ``python tools/bench_recnn.py [--data data/jets5] [--jets 2048]``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hepflow.layers import GatedTreeEmbedding  # noqa: E402
from hepflow.testing.recnn_reference import recursive_embedding  # noqa: E402


def load(data: str, n: int) -> dict[str, np.ndarray]:
    files = sorted(glob.glob(os.path.join(data, "top_*.h5"))) + sorted(glob.glob(os.path.join(data, "qcd_*.h5")))
    if not files:
        sys.exit(f"{data}: no top_*.h5 / qcd_*.h5 with trees; run: hepflow generate jets --out {data} --preset "
                 "top_tagging --trees --process top=1000 --process qcd=1000")
    out: dict[str, list] = {}
    got = 0
    for path in files:
        with h5py.File(path, "r") as f:
            if "tree_ca" not in f:
                sys.exit(f"{path} has no trees; generate with --trees")
            for k in ("constituents", "tree_ca", "tree_kt", "tree_antikt", "tree_desc_pt"):
                out.setdefault(k, []).append(f[k][...])
            got += len(f["constituents"])
        if got >= n:
            break
    return {k: np.concatenate(v)[:n] for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/jets5")
    ap.add_argument("--jets", type=int, default=2048)
    ap.add_argument("--per-jet", type=int, default=128, help="jets timed with the per-jet recursion")
    args = ap.parse_args()
    sys.setrecursionlimit(10_000)  # desc-pT chains are up to 200 deep
    jets = load(args.data, args.jets)
    layer = GatedTreeEmbedding(units=40)
    call = tf.function(lambda c, t: layer([c, t]))
    rows, out = [], {}
    for alg in ("ca", "kt", "antikt", "desc_pt"):
        tree = jets[f"tree_{alg}"]
        got = call(tf.constant(jets["constituents"][:8]), tf.constant(tree[:8])).numpy()  # builds the layer
        ref = recursive_embedding(layer, jets["constituents"][:8], tree[:8])
        assert np.allclose(got, ref, atol=1e-4), f"{alg}: batched and recursive embeddings differ"
        t = time.perf_counter()
        recursive_embedding(layer, jets["constituents"][:args.per_jet], tree[:args.per_jet])
        per_jet = args.per_jet / (time.perf_counter() - t)
        for batch in (128, 1024):
            c = [tf.constant(jets["constituents"][a:a + batch]) for a in range(0, len(tree), batch)]
            tr = [tf.constant(tree[a:a + batch]) for a in range(0, len(tree), batch)]
            call(c[0], tr[0])  # trace
            best = 0.0
            for _ in range(3):
                t = time.perf_counter()
                for x, y in zip(c, tr):
                    call(x, y).numpy()
                best = max(best, len(tree) / (time.perf_counter() - t))
            rows.append((alg, batch, best, per_jet))
            out[f"speedup_{alg}_batch{batch}"] = round(best / per_jet, 1)
    print(f"\nhepflow gated RecNN (40 units) — {len(jets['constituents'])} jets (top + QCD, up to 200 constituents); "
          f"{os.cpu_count()} cores, {platform.machine()}")
    print(f"{'tree':8s} {'batch':>6s} {'batched jets/s':>15s} {'per-jet recursion jets/s':>26s} {'speedup':>8s}")
    for alg, batch, fast, slow in rows:
        print(f"{alg:8s} {batch:6d} {fast:15,.0f} {slow:26,.0f} {fast / slow:8.1f}")
    print(json.dumps({"speedup_vs_per_jet": out["speedup_ca_batch1024"], **out, "jets": len(jets["constituents"])}))


if __name__ == "__main__":
    main()
