#!/usr/bin/env python
"""Benchmark: ms per shower, hepflow's parametrized simulation vs its generators (CaloGAN, cVAE, CaloFlow).

All make e+ showers at uniform energies in 1-100 GeV, in batches of 1, 10, 128 and 1024, in one
process: the simulation (``hepflow.physics.calo_sim.simulate``, vectorized numpy) and each
generator — ``hepflow.models.CaloGAN`` (plain and with occupancy), ``hepflow.models.CaloVAE`` and
``hepflow.models.CaloFlow`` — as a traced
``tf.function`` (their speed does not depend on their weights, so ``--run`` is optional; a
generator of several particle types makes e+, type 0). The CaloGAN study's figures (Geant4 and
its GAN, other hardware, arXiv:1712.10321) are printed beside ours for scale, not for comparison.

Last line: JSON with, per generator, ``ms_per_shower_batch1024`` (goal ≤ 1 ms on 2 CPU cores) and
``speedup_vs_sim`` (simulation ms / generator ms at batch 1024), plus the per-batch figures.
Usage: ``python tools/bench_calogan.py [--run RUN_DIR ...] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hepflow  # noqa: E402,F401  (allocator settings before TensorFlow starts)
from hepflow.models import calo_flow, calo_vae, calogan  # noqa: E402  (also registers them for loading)
from hepflow.physics.calo_sim import simulate  # noqa: E402

BATCHES = (1, 10, 128, 1024)
#: The CaloGAN study's timing (ms/shower; Geant4 on a CPU, the GAN at batch 1024 on a CPU and a
#: GPU), as quoted in hepflow's issue; batch sizes it does not quote are left out.
PUBLISHED = {"Geant4 (CaloGAN study)": {1: 1772.0, 10: 1772.0, 128: 1772.0, 1024: 1772.0},
             "CaloGAN, CPU (study)": {1024: 2.03},
             "CaloGAN, GPU (study)": {1024: 0.012}}


def time_per_shower(fn, batch: int, *, min_seconds: float, min_calls: int = 3) -> float:
    fn(batch)  # warm-up (tracing)
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < min_seconds:
        fn(batch)
        calls += 1
    return (time.perf_counter() - t0) / (calls * batch) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", default=[],
                        help="a trained generator run (repeatable; default: every generator, untrained weights)")
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    args = parser.parse_args()
    min_seconds = 0.5 if args.quick else 3.0
    if args.run:
        import keras

        models = {}
        for run in args.run:
            model = keras.saving.load_model(os.path.join(run, "model.keras"))
            models[f"hepflow {type(model).__name__} ({os.path.basename(os.path.normpath(run))})"] = model
    else:
        models = {"hepflow CaloGAN generator": calogan(), "hepflow CaloGAN generator, occupancy": calogan(occupancy=True),
                  "hepflow CaloVAE generator": calo_vae(), "hepflow CaloFlow generator": calo_flow()}
    rng = np.random.default_rng(0)

    def generator_fn(model):
        particles = getattr(model, "particles", 1)

        @tf.function(reduce_retracing=True)
        def generate(energy):
            return model.generate(energy, particle=0 if particles > 1 else None)

        def run(n):
            out = generate(tf.constant(rng.uniform(1, 100, (n, 1)).astype(np.float32)))
            return [v.numpy() for v in out.values()]  # showers in host memory, as the simulation's
        return run

    seeds = iter(range(10**6))

    def run_simulation(n):
        return simulate("eplus", n, seed=next(seeds))

    ours = {"hepflow simulation (numpy)": {}, **{name: {} for name in models}}
    runners = {name: generator_fn(m) for name, m in models.items()}
    for b in BATCHES:
        ours["hepflow simulation (numpy)"][b] = time_per_shower(run_simulation, b, min_seconds=min_seconds)
        for name, run in runners.items():
            ours[name][b] = time_per_shower(run, b, min_seconds=min_seconds)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"ms per e+ shower, 1-100 GeV; ours on {platform.machine()} {device}")
    print(f"{'':44s}" + "".join(f"{f'batch {b}':>12s}" for b in BATCHES))
    for table in (ours, PUBLISHED):
        for name, row in table.items():
            print(f"{name:44s}" + "".join(f"{row[b]:12.3f}" if b in row else f"{'—':>12s}" for b in BATCHES))
    sim = ours["hepflow simulation (numpy)"]
    print(json.dumps({"generators": {name: {"ms_per_shower_batch1024": round(ours[name][1024], 4),
                                            "speedup_vs_sim": round(sim[1024] / ours[name][1024], 2),
                                            "ms": {str(b): round(v, 4) for b, v in ours[name].items()}}
                                     for name in models},
                      "simulation_ms": {str(b): round(v, 4) for b, v in sim.items()}, "device": device}))


if __name__ == "__main__":
    main()
