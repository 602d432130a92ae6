#!/usr/bin/env python
"""Benchmark: training throughput on one worker vs two localhost workers (MultiWorkerMirroredStrategy).

The workload is a real tagger config (``configs/top_tagging/pfn.yaml`` by default) on generated
Pythia jets, trained by ``hepflow.training.train`` for the same number of global steps (global
batch ``--batch``) in every setting, so each setting sees the same total data:

1. one worker, both cores (the plain single-device run);
2. one worker pinned to one core (``taskset``);
3. two localhost workers (``TF_CONFIG``), each pinned to its own core: every worker reads its
   own shard of each epoch, gradients are all-reduced over loopback gRPC.

Rates are steady-state: the global batch over the median wall time of a training step (input wait
included; the timer waits for each step's weight update, since steps are dispatched
asynchronously; each epoch's first 5 steps, with iterator creation and tracing, left out); the
end-to-end rate (jets over ``train_seconds``, which also holds tracing, validation, checkpoints and
TensorBoard writes) is printed beside it and reported as ``scaling_2_workers_per_core_end_to_end``.
``scaling_2_workers`` = jets/s of (3) / (1): on a 2-core machine both use the same cores, so it
measures what synchronisation costs (ideal 1.0). ``scaling_2_workers_per_core`` = (3) / (2):
one core per worker against one core, what adding a machine per worker would give (ideal 2.0).
``input_wait_fraction``: 1 − (step time on one cached batch) / (step time on the pipeline) for
setting (1), the share of a step spent waiting for data.

Prints a table and, as its last line, a JSON object with the ratios.
Usage: ``python tools/bench_distribute.py [--data DIR] [--steps N] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, sys, time
import keras, numpy as np
import tensorflow as tf
from hepflow.runs.reporting import Reporter
from hepflow.training import train

class StepTimes(Reporter, keras.callbacks.Callback):
    # wall time of every training step (input wait included), skipping each epoch's first 5 (iterator, tracing)
    def __init__(self):
        keras.callbacks.Callback.__init__(self)
        self.times = []
    def callbacks(self, run):
        return [self]
    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        # steps are dispatched asynchronously: reading a weight waits for this step's update
        np.asarray(self.model.trainable_variables[0].value)
        if batch >= 5:
            self.times.append(time.perf_counter() - self.t0)

timer = StepTimes()
s = train(sys.argv[1], run_dir=sys.argv[2], overrides=sys.argv[4:], strategy=sys.argv[3], verbose=0, reporters=[timer])
s["median_step_s"] = float(np.median(timer.times))
print("SUMMARY " + json.dumps(s))
"""

COMPUTE_ONLY = r"""
import json, sys, time
import tensorflow as tf, keras
from hepflow.data import make_dataset
from hepflow.runs import build_model, build_optimizer, build_transform, load_config, split_specs
from hepflow.training.loop import fit
from hepflow.runs import model_inputs
cfg = load_config(sys.argv[1], sys.argv[3:])
steps, batch = int(cfg["training"]["steps_per_epoch"]), int(cfg["training"]["batch_size"])
model = build_model(cfg)
model.compile(optimizer=build_optimizer(cfg), loss="binary_crossentropy")
ds = model_inputs(model, make_dataset(split_specs(cfg)["train"], batch_size=batch, transform=build_transform(cfg),
                                      epoch=steps, seed=1, cache=None))
out = {}
for name, data in (("pipeline", ds), ("one_cached_batch", ds.take(1).cache().repeat(steps))):
    fit(model, data, epochs=1, verbose=0)  # warm-up: tracing
    t0 = time.perf_counter()
    fit(model, data, epochs=int(sys.argv[2]), verbose=0)
    out[name] = time.perf_counter() - t0
print("TIMES " + json.dumps(out))
"""


def last_json(text: str, tag: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith(tag + " ")]
    if not lines:
        raise RuntimeError(text[-3000:])
    return json.loads(lines[-1][len(tag) + 1:])


def run_workers(config: str, overrides: list[str], *, workers: int, cores: list[list[int]] | None,
                out: str) -> tuple[float, dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    from hepflow.training.distribute import localhost_tf_configs

    tf_configs = localhost_tf_configs(workers)
    procs = []
    t0 = time.perf_counter()
    for i in range(workers):
        e = dict(env)
        strategy = "default"
        if workers > 1:
            e["TF_CONFIG"] = tf_configs[i]
            strategy = "multi_worker"
        cmd = [sys.executable, "-c", WORKER, config, os.path.join(out, "run"), strategy, *overrides]
        if cores:
            cmd = ["taskset", "-c", ",".join(map(str, cores[i]))] + cmd
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e))
    outs = [p.communicate(timeout=3600) for p in procs]
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(err[-3000:])
    return wall, last_json(outs[0][0], "SUMMARY")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "top_tagging", "pfn.yaml"))
    parser.add_argument("--data", default=None, help="top-tagging jets (default: data/top_tagging, else generated)")
    parser.add_argument("--steps", type=int, default=60, help="global steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.epochs = 20, 1
    data = args.data or os.path.join(ROOT, "data", "top_tagging")
    if not os.path.isdir(data) or not any(n.startswith("top_") for n in os.listdir(data)):
        data = os.path.join(ROOT, "bench_data", "distribute_jets")
        if not os.path.exists(os.path.join(data, "top_00009.h5")):
            from hepflow.physics.pythia_jets import generate_top_tagging

            print(f"generating 4000 jets into {data} ...", flush=True)
            generate_top_tagging(data, n_jets=4000, workers=2, chunk_jets=200, seed=3)
    overrides = [f"data.dir={data}", f"training.steps_per_epoch={args.steps}", f"training.epochs={args.epochs}",
                 f"training.batch_size={args.batch}", "training.cache=null", "training.early_stopping=null",
                 "training.validation_steps=1"]
    cores = os.cpu_count() or 1
    settings = [("1 worker, all cores", 1, None), ("1 worker, 1 core", 1, [[0]])]
    if cores >= 2:
        settings.append(("2 workers, 1 core each", 2, [[0], [1]]))
    else:
        settings.append(("2 workers, shared core", 2, None))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, workers, pin in settings:
            out = os.path.join(tmp, name.replace(" ", "_").replace(",", ""))
            wall, summary = run_workers(args.config, overrides, workers=workers, cores=pin, out=out)
            jets = summary["train_jets_seen"]
            rows[name] = {"jets": jets, "train_s": summary["train_seconds"], "wall_s": wall,
                          "jets_per_s": jets / summary["train_seconds"], "replicas": summary["replicas"],
                          "steady_jets_per_s": args.batch / summary["median_step_s"]}
            print(f"{name:26s} {jets:8d} jets in {summary['train_seconds']:7.1f} s of training "
                  f"({wall:6.1f} s wall): {rows[name]['jets_per_s']:8.0f} jets/s; steady state "
                  f"{rows[name]['steady_jets_per_s']:8.0f} jets/s ({1e3 * summary['median_step_s']:.1f} ms/step)",
                  flush=True)
        proc = subprocess.run([sys.executable, "-c", COMPUTE_ONLY, args.config, str(args.epochs), *overrides],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        times = last_json(proc.stdout, "TIMES")
    wait = max(0.0, 1.0 - times["one_cached_batch"] / times["pipeline"])
    one, one_core, two = (rows[n] for n, _, _ in settings)
    print()
    print(f"{'setting':26s} {'jets/s':>9s} {'vs 1 worker':>12s} {'steady jets/s':>14s} {'vs 1 worker':>12s}")
    for name, r in rows.items():
        print(f"{name:26s} {r['jets_per_s']:9.0f} {r['jets_per_s'] / one['jets_per_s']:12.2f} "
              f"{r['steady_jets_per_s']:14.0f} {r['steady_jets_per_s'] / one['steady_jets_per_s']:12.2f}")
    print(f"input wait (1 worker): pipeline {times['pipeline']:.1f} s vs one cached batch "
          f"{times['one_cached_batch']:.1f} s for the same steps → {wait:.3f}")
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; config {os.path.basename(args.config)}, "
          f"global batch {args.batch}, {args.steps} steps × {args.epochs} epochs")
    print(json.dumps({"scaling_2_workers": round(two["steady_jets_per_s"] / one["steady_jets_per_s"], 3),
                      "scaling_2_workers_per_core": round(two["steady_jets_per_s"] / one_core["steady_jets_per_s"], 3),
                      "scaling_2_workers_per_core_end_to_end": round(two["jets_per_s"] / one_core["jets_per_s"], 3),
                      "input_wait_fraction": round(wait, 3),
                      "jets_per_s": {k: round(v["jets_per_s"], 1) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
