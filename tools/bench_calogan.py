#!/usr/bin/env python
"""Benchmark: ms per shower, hepflow's parametrized simulation vs the CaloGAN-style generator.

Both make e+ showers at uniform energies in 1-100 GeV, in batches of 1, 10, 128 and 1024, in one
process: the simulation (``hepflow.physics.calo_sim.simulate``, vectorized numpy) and the
generator of ``hepflow.models.CaloGAN`` (a traced ``tf.function``; its speed does not depend on
its weights, so ``--run`` is optional). The CaloGAN study's figures (Geant4 and its GAN, other
hardware, arXiv:1712.10321) are printed beside ours for scale, not for comparison.

Last line: JSON with ``ms_per_shower_batch1024`` (generator, goal ≤ 1 ms on 2 CPU cores) and
``speedup_vs_sim`` (simulation ms / generator ms at batch 1024), plus the per-batch figures.
Usage: ``python tools/bench_calogan.py [--run RUN_DIR] [--quick]``.
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
from hepflow.models import calogan  # noqa: E402  (also registers CaloGAN for loading)
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
    parser.add_argument("--run", default=None, help="a trained eplus_calogan run (default: untrained weights)")
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    args = parser.parse_args()
    min_seconds = 0.5 if args.quick else 3.0
    if args.run:
        import keras

        model = keras.saving.load_model(os.path.join(args.run, "model.keras"))
    else:
        model = calogan()
    rng = np.random.default_rng(0)

    @tf.function(reduce_retracing=True)
    def generate(energy):
        return model.generate(energy)

    def run_generator(n):
        out = generate(tf.constant(rng.uniform(1, 100, (n, 1)).astype(np.float32)))
        return [v.numpy() for v in out.values()]  # showers in host memory, as the simulation's

    seeds = iter(range(10**6))

    def run_simulation(n):
        return simulate("eplus", n, seed=next(seeds))

    ours = {"hepflow simulation (numpy)": {}, "hepflow CaloGAN generator": {}}
    for b in BATCHES:
        ours["hepflow simulation (numpy)"][b] = time_per_shower(run_simulation, b, min_seconds=min_seconds)
        ours["hepflow CaloGAN generator"][b] = time_per_shower(run_generator, b, min_seconds=min_seconds)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"ms per e+ shower, 1-100 GeV; ours on {platform.machine()} {device}")
    print(f"{'':34s}" + "".join(f"{f'batch {b}':>12s}" for b in BATCHES))
    for table in (ours, PUBLISHED):
        for name, row in table.items():
            print(f"{name:34s}" + "".join(f"{row[b]:12.3f}" if b in row else f"{'—':>12s}" for b in BATCHES))
    sim, gen = ours["hepflow simulation (numpy)"], ours["hepflow CaloGAN generator"]
    print(json.dumps({"ms_per_shower_batch1024": round(gen[1024], 4),
                      "speedup_vs_sim": round(sim[1024] / gen[1024], 2),
                      "generator_ms": {str(b): round(v, 4) for b, v in gen.items()},
                      "simulation_ms": {str(b): round(v, 4) for b, v in sim.items()},
                      "device": device}))


if __name__ == "__main__":
    main()
