#!/usr/bin/env python
"""Benchmark: an exported SavedModel against the in-process Keras model.

For two taggers (PFN on 100 particles, DeepTop CNN on 40 × 40 images), each exported with
``hepflow.serving.export``, measures on jet-like constituents:

1. latency at batch 1 (median of repeated calls) and
2. throughput (jets/s) at batch 1, 16, 128 and 1024

for Keras ``model.predict``, a direct Keras call ``model(x, training=False)``, the loaded
SavedModel's ``serve_features`` signature (the same preprocessed inputs) and its
``serving_default`` signature (raw constituents, preprocessing included) and, with the ``[onnx]``
extra, that signature converted to ONNX (``hepflow.serving.onnx``) under ONNX Runtime. Prints a
table and, as its last line, a JSON object with ``savedmodel_vs_keras`` (SavedModel vs Keras
``predict`` throughput at batch 1024, per model; goal ≥ 0.9) and ``onnx_vs_savedmodel`` (ONNX
Runtime vs the SavedModel, both on raw constituents, at batch 1024).

Usage: ``python tools/bench_serving.py [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hepflow  # noqa: E402,F401
from hepflow import models  # noqa: E402
from hepflow.ops.jets import ConstituentFeatures, JetImages  # noqa: E402
from hepflow.serving import export  # noqa: E402

BATCHES = (1, 16, 128, 1024)


def constituents(n: int, seed: int = 0) -> np.ndarray:
    """Jet-like constituents (n, 200, 4): 20-80 massless particles around η = φ = 0, pT-ordered."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 200, 4), np.float32)
    for i in range(n):
        k = rng.integers(20, 80)
        pt = np.sort(rng.exponential(10.0, k))[::-1] + 0.5
        eta, phi = rng.normal(0, 0.3, k), rng.normal(0, 0.3, k)
        out[i, :k] = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], 1)
    return out


def timed(fn, rows: int, min_rows: int, min_calls: int) -> float:
    """Jets/s of ``fn`` (one call scores ``rows`` jets) over at least min_rows jets and min_calls calls."""
    fn()
    fn()  # warm-up: tracing, allocation
    calls = max(min_calls, -(-min_rows // rows))
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * rows / (time.perf_counter() - t)


def latency_ms(fn, calls: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def bench_model(name, model, transform, raw: np.ndarray, workdir: str, quick: bool) -> dict:
    path = export(model, workdir, name=name, raw_inputs={"constituents": tf.TensorSpec((None, 200, 4))},
                  preprocess=transform)
    loaded = tf.saved_model.load(path)
    serve, serve_features = loaded.signatures["serving_default"], loaded.signatures["serve_features"]
    names = [t.name for t in model.inputs]
    feats = {k: v.numpy() for k, v in transform({"constituents": tf.constant(raw)}).items() if k in names}
    min_rows, min_calls = (2048, 5) if quick else (8192, 20)
    paths = {
        "keras predict": lambda b: (lambda: model.predict({k: v[:b] for k, v in feats.items()}, batch_size=b,
                                                          verbose=0)),
        "keras call": lambda b: (lambda: model({k: tf.constant(v[:b]) for k, v in feats.items()},
                                               training=False).numpy()),
        "SavedModel features": lambda b: (lambda: serve_features(**{k: tf.constant(v[:b]) for k, v in
                                                                    feats.items()})["score"].numpy()),
        "SavedModel raw": lambda b: (lambda: serve(constituents=tf.constant(raw[:b]))["score"].numpy()),
    }
    try:
        import onnxruntime

        from hepflow.serving.onnx import export_onnx

        onnx_file = export_onnx(path, {"serving_default": {"constituents": raw[:64]}})["serving_default"]
        session = onnxruntime.InferenceSession(onnx_file)
        paths["ONNX Runtime raw"] = lambda b: (lambda: session.run(["score"], {"constituents": raw[:b]})[0])
    except ImportError:
        print("ONNX Runtime not measured: the [onnx] extra is not installed")
    out = {}
    for label, make in paths.items():
        row = {"latency_ms_batch1": latency_ms(make(1), 20 if quick else 100)}
        for b in BATCHES:
            row[f"jets_per_s_batch{b}"] = timed(make(b), b, min_rows if b > 1 else 200, min_calls)
        out[label] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    raw = constituents(1024)
    setups = {
        "pfn": (models.particle_flow_network(n_particles=100), ConstituentFeatures(max_particles=100)),
        "deeptop_cnn": (models.deeptop_cnn(input_shape=(40, 40, 1)), JetImages(npix=40)),
    }
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, (model, transform) in setups.items():
            results[name] = bench_model(name, model, transform, raw, workdir, args.quick)
    print(f"# {platform.node()} · {os.cpu_count()} CPUs · TensorFlow {tf.__version__} · Keras {keras.__version__}")
    head = f"{'model':12s} {'path':20s} {'lat@1 ms':>9s}" + "".join(f" {'jets/s@' + str(b):>12s}" for b in BATCHES)
    print(head)
    for name, rows in results.items():
        for label, row in rows.items():
            print(f"{name:12s} {label:20s} {row['latency_ms_batch1']:9.2f}"
                  + "".join(f" {row[f'jets_per_s_batch{b}']:12,.0f}" for b in BATCHES))
    summary = {
        "savedmodel_vs_keras": {n: round(r["SavedModel features"]["jets_per_s_batch1024"]
                                         / r["keras predict"]["jets_per_s_batch1024"], 3) for n, r in results.items()},
        "savedmodel_vs_keras_call": {n: round(r["SavedModel features"]["jets_per_s_batch1024"]
                                              / r["keras call"]["jets_per_s_batch1024"], 3) for n, r in results.items()},
        "onnx_vs_savedmodel": {n: round(r["ONNX Runtime raw"]["jets_per_s_batch1024"]
                                        / r["SavedModel raw"]["jets_per_s_batch1024"], 3)
                               for n, r in results.items() if "ONNX Runtime raw" in r},
        "latency_ms_batch1": {n: {k: round(v["latency_ms_batch1"], 3) for k, v in r.items()}
                              for n, r in results.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
