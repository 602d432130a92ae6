#!/usr/bin/env python
"""Benchmark: ParticleNet training throughput, hepflow's EdgeConv vs the textbook EdgeConv.

The textbook EdgeConv (as the DGCNN and ParticleNet papers write it) builds the edge features
``(x_i, x_j - x_i)`` for every slot of the padded jet, including the padding, and runs the
edge MLP on all ``n × k`` edges (compiled with XLA, Keras' default). hepflow's EdgeConv computes
the first MLP layer once per particle (``x_i (W_i - W_d) + x_j W_d``) and runs the edge MLP on
real particles only. Both models get the same weights; the script checks that they give the
same predictions, then times training steps on the same batches of real jets (the
``configs/top_tagging/particlenet*.yaml`` transform: 100 constituents, zero-padded).

Prints a table and, as its last line, a JSON object with the speed-ups.
Usage: ``python tools/bench_particlenet.py [--data DIR] [--steps N] [--batch B]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import keras
import numpy as np
from keras import ops

from hepflow import models
from hepflow.layers import EdgeConv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TextbookEdgeConv(EdgeConv):
    """The baseline: edge features of every padded slot through the whole MLP."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_jit = True

    def build(self, input_shape):
        _, feat_shape, _ = input_shape
        edge_dim = 2 * feat_shape[-1]
        for dense, norm, width in zip(self.mlp, self.norms, self.channels):
            dense.build((None, None, None, edge_dim))
            norm.build((None, None, None, width))
            edge_dim = width
        self.shortcut.build((None, None, feat_shape[-1]))
        self.shortcut_norm.build((None, None, self.channels[-1]))

    def call(self, inputs, training=None):
        points, x, mask = inputs
        n = ops.shape(points)[1]
        sq = ops.sum(points * points, axis=-1, keepdims=True)
        d = sq - 2 * ops.matmul(points, ops.transpose(points, (0, 2, 1))) + ops.transpose(sq, (0, 2, 1))
        d = d + (1.0 - ops.transpose(mask, (0, 2, 1))) * 1e9 + ops.eye(n, dtype=d.dtype)[None] * 1e9
        _, idx = ops.top_k(-d, k=min(self.k, n - 1))
        offsets = ops.reshape(ops.arange(ops.shape(x)[0], dtype=idx.dtype) * n, (-1, 1, 1))
        neighbours = ops.take(ops.reshape(x, (-1, ops.shape(x)[-1])), idx + offsets, axis=0)
        center = ops.expand_dims(x, 2)
        h = ops.concatenate([ops.broadcast_to(center, ops.shape(neighbours)), neighbours - center], axis=-1)
        for dense, norm in zip(self.mlp, self.norms):
            h = ops.relu(norm(dense(h), training=training))
        out = ops.relu(ops.mean(h, axis=2) + self.shortcut_norm(self.shortcut(x), training=training))
        return out * mask


def textbook_copy(model: keras.Model) -> keras.Model:
    """The same model with every EdgeConv replaced by the textbook one, weights copied."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "EdgeConv":
            layer["class_name"] = layer["registered_name"] = "TextbookEdgeConv"
    baseline = keras.Model.from_config(config, custom_objects={"TextbookEdgeConv": TextbookEdgeConv})
    baseline.set_weights(model.get_weights())
    return baseline


def jet_batches(data: str, batch: int, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` batches of real jets through the ParticleNet configs' transform, in memory."""
    from hepflow.data import make_dataset
    from hepflow.runs import load_config, split_specs
    from hepflow.runs import build_transform

    cfg = load_config(os.path.join(ROOT, "configs", "top_tagging", "particlenet.yaml"), [f"data.dir={data}"])
    ds = make_dataset(split_specs(cfg)["train"], batch_size=batch, transform=build_transform(cfg), seed=1, cache=None)
    out = []
    for features, labels in ds.take(count):
        out.append(({k: features[k].numpy() for k in ("points", "particles", "mask")}, labels.numpy()))
    return out


def jets_per_second(model: keras.Model, batches, steps: int) -> float:
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    for x, y in batches[:2]:  # tracing and warm-up
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        model.train_on_batch(x, y)
    return steps * len(batches[0][1]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--data", default=None, help="top-tagging jets (default: data/top_tagging, else generated)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per model (default 8)")
    parser.add_argument("--batch", type=int, default=128, help="jets per batch (default 128, as in the configs)")
    args = parser.parse_args()
    data = args.data or os.path.join(ROOT, "data", "top_tagging")
    if not os.path.isdir(data) or not any(n.startswith("top_") for n in os.listdir(data)):
        data = os.path.join(ROOT, "bench_data", "particlenet_jets")
        if not os.path.exists(os.path.join(data, "top_00009.h5")):
            from hepflow.physics.pythia_jets import generate_top_tagging

            print(f"generating 2000 jets into {data} ...", flush=True)
            generate_top_tagging(data, n_jets=2000, workers=2, chunk_jets=100, seed=3)
    batches = jet_batches(data, args.batch, 4)
    real = float(np.mean([b[0]["mask"].mean() for b in batches]))
    rows, ratios = [], {}
    for name, steps in (("particlenet_lite", 4 * args.steps), ("particlenet", args.steps)):
        keras.utils.set_random_seed(0)
        model = getattr(models, name)(n_particles=100)
        baseline = textbook_copy(model)
        x = batches[0][0]
        diff = float(np.max(np.abs(model.predict(x, verbose=0) - baseline.predict(x, verbose=0))))
        if diff > 1e-4:
            raise SystemExit(f"{name}: hepflow and textbook EdgeConv disagree by {diff:.2e}")
        base = jets_per_second(baseline, batches, steps)
        ours = jets_per_second(model, batches, steps)
        rows.append((name, base, ours, diff))
        ratios[f"speedup_{name}"] = round(ours / base, 2)
    print(f"\n{args.batch} jets per batch, {real:.0%} of the 100 constituent slots are real particles")
    print(f"{'model':18s} {'textbook jets/s':>16s} {'hepflow jets/s':>15s} {'speed-up':>9s} {'max |Δ pred|':>13s}")
    for name, base, ours, diff in rows:
        print(f"{name:18s} {base:16.0f} {ours:15.0f} {ours / base:8.2f}× {diff:13.1e}")
    print(json.dumps({"benchmark": "particlenet", "real_fraction": round(real, 3), **ratios}))


if __name__ == "__main__":
    main()
