#!/usr/bin/env python
"""Benchmark: the tf.data service (``make_dataset(service=...)``) against the in-process pipeline.

Writes jet-like HDF5 files (200 constituents × 4 float32 + mass per jet, two classes), then
measures in one run, on the same files, batch 256, two samples mixed 1:1, ``Normalize``:

1. the in-process pipeline (``make_dataset`` without ``service``);
2. the reader the service workers run (TensorFlow ops only: memory-mapped files), in this process
   without the service — what one worker can deliver before any transport;
3. ``service=`` with a dispatcher in this process and 1, 2, 4 worker processes on this machine
   (each imports TensorFlow only, as a ``hepflow data-service worker`` would), batches sent
   uncompressed (hepflow's default), and one worker with the service's snappy compression.

Each row is the median over several epochs (single epochs vary by up to 2× on small VMs).
Prints a table and, as its last line, a JSON object: ``service_1_vs_local`` and
``service_scaling`` (N workers / 1 worker).
Usage: ``python tools/bench_service.py [--quick] [--size-gb 0.6] [--workers 1,2,4]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from hepflow.data import Normalize, SampleSpec, make_dataset  # noqa: E402
from hepflow.data.pipeline import Pipeline  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pipeline import make_files, median_rate  # noqa: E402

WORKER = """
import sys, tensorflow as tf
svc = tf.data.experimental.service
w = svc.WorkerServer(svc.WorkerConfig(dispatcher_address=sys.argv[1]))
print("worker up", flush=True)
w.join()
"""


def start_workers(address: str, n: int) -> list[subprocess.Popen]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, address], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    for p in procs:
        if p.stdout.readline().strip() != b"worker up":
            raise RuntimeError("a tf.data service worker did not start")
    return procs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~150 MB, 3 epochs per row")
    ap.add_argument("--size-gb", type=float, default=None, help="total size of the files (default 0.6)")
    ap.add_argument("--files", type=int, default=4, help="files per class")
    ap.add_argument("--dir", default="bench_data", help="where the files are written (reused)")
    ap.add_argument("--workers", default="1,2,4", help="worker process counts")
    ap.add_argument("--passes", type=int, default=None, help="epochs per row (default 5, --quick 3)")
    args = ap.parse_args()
    size = args.size_gb or (0.15 if args.quick else 0.6)
    passes = args.passes or (3 if args.quick else 5)
    os.makedirs(args.dir, exist_ok=True)
    qcd, top, n_jets = make_files(args.dir, size, args.files)
    specs = [SampleSpec(name="qcd", files=qcd, keys={"x": "constituents", "m": "mass"}, label=0),
             SampleSpec(name="top", files=top, keys={"x": "constituents", "m": "mass"}, label=1)]
    opts = dict(batch_size=256, transform=Normalize(offsets={"m": 100.0}, scales={"x": 50.0, "m": 50.0}), seed=1)
    rows = {}
    rows["in-process pipeline"] = median_rate(make_dataset(specs, **opts), passes)
    pipe = Pipeline(specs, **opts)
    worker_reader = pipe._service_chunks(seed=1, deterministic=True, with_record_id=False).rebatch(256).prefetch(2)
    rows["worker's reader, in this process"] = median_rate(worker_reader, passes)
    svc = tf.data.experimental.service
    settings = [(int(v), None) for v in args.workers.split(",") if v] + [(1, "AUTO")]
    for n, compression in settings:
        dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
        procs = start_workers(dispatcher.target.split("://")[1], n)
        name = f"service, {n} worker process{'es' if n > 1 else ''}" + (", compressed" if compression else "")
        try:
            rows[name] = median_rate(
                make_dataset(specs, service=dispatcher.target, service_compression=compression, **opts), passes)
        finally:
            for p in procs:
                p.kill()
                p.wait()
                p.stdout.close()
            dispatcher.stop()
    local = rows["in-process pipeline"][0]
    print(f"\ntf.data service benchmark — {n_jets} jets ({n_jets * 3204 / 1e9:.2f} GB), batch 256, mix 1:1, Normalize; "
          f"{os.cpu_count()} cores, {platform.machine()}; median of {passes} epochs")
    print(f"{'method':40s} {'jets/s':>10s} {'vs in-process':>14s}   epochs (k jets/s)")
    for name, (med, rates) in rows.items():
        print(f"{name:40s} {med:10,.0f} {med / local:14.2f}   {' '.join(f'{r / 1e3:.0f}' for r in rates)}")
    service = {int(k.split()[1]): v[0] for k, v in rows.items() if k.startswith("service,") and "compressed" not in k}
    compressed = rows.get("service, 1 worker process, compressed", (None,))[0]
    one = service.get(1)
    print(json.dumps({
        "service_1_vs_local": round(one / local, 3) if one else None,
        "service_scaling": {str(n): round(r / one, 2) for n, r in service.items()} if one else None,
        "worker_reader_vs_local": round(rows["worker's reader, in this process"][0] / local, 3),
        "compressed_vs_uncompressed": round(compressed / one, 3) if one and compressed else None,
        "local_jets_per_s": round(local), "cores": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
