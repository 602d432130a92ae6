#!/usr/bin/env python
"""Benchmark: hepflow's sample-spec pipeline against h5py alone and a hand-written generator.

Writes jet-like HDF5 files (200 constituents × 4 float32 per jet, two classes,
several files), then measures in one run:

1. limit: the same bytes read with h5py alone, sequentially, in one process;
2. what users write by hand: a Python generator yielding one jet at a time
   through ``tf.data.Dataset.from_generator`` (reading h5py blocks of 1024 rows);

Pipelines are consumed inside the graph (``Dataset.reduce``), as Keras consumes them.
3. hepflow streaming epoch (no cache): two samples mixed 1:1, Normalize transform;
4. hepflow first epoch with ``cache="memory"`` (also fills the cache);
5. hepflow cached epoch;
6. a complete disk cache opened by new pipelines: the first epoch of each checks every block of
   rows against its checksum, the second serves blocks already checked (medians over several
   pipelines; the ratio is what the checks cost a process's first epoch);
7. a small Keras model trained on the cached pipeline: fraction of step time
   spent waiting for input.

Prints a table and, as its last line, a JSON object with the ratios.
Usage: ``python tools/bench_pipeline.py [--quick] [--size-gb 1.0] [--dir bench_data]``.

With ``--cores 1,2`` (any list) it sweeps cores instead: for each transform (``Normalize``,
``ConstituentFeatures(max_particles=100)``, ``JetImages`` 37×37) a streaming epoch in a process
pinned to the first N cores (``taskset``; hepflow sizes its parallelism by the CPU affinity), the
median of several epochs, beside h5py's single-threaded read and a PyTorch ``DataLoader`` doing
the same work in numpy (when ``torch`` is installed). JSON: ``scaling_2_vs_1`` per transform.

With ``--format root,parquet`` it measures the other sources instead, on the same jets
rewritten as ROOT TTrees (per-particle jagged branches, baskets of 10,000 entries) and
Parquet tables (list columns, row groups of 10,000): uproot's own ``iterate`` over the
branches (the limit for ROOT) and pyarrow's ``iter_batches`` (the limit for Parquet), the
same loops padding to numpy arrays as a user would before feeding TensorFlow, hepflow's
streaming, first and cached epochs from each format, and the HDF5 path beside them; weaver-core's
loader when ``weaver`` is importable. JSON: ``root_vs_uproot``, ``root_vs_hdf5``, ...
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hepflow.data import Normalize, SampleSpec, make_dataset  # noqa: E402
from hepflow.data.pipeline import Pipeline  # noqa: E402
from hepflow.testing import write_jet_files  # noqa: E402

JET_BYTES = 200 * 4 * 4 + 4  # constituents + mass


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> float:
    """Resets the kernel's peak-RSS mark (Linux) and returns the current RSS in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def make_files(directory: str, size_gb: float, n_files: int) -> tuple[list[str], list[str], int]:
    per_file = int(size_gb * 1e9 / JET_BYTES / (2 * n_files))
    want = {"qcd": 1, "top": 2}
    out = {}
    for name, seed in want.items():
        paths = sorted(glob.glob(os.path.join(directory, f"{name}_*.h5")))
        ok = len(paths) == n_files and all(h5py.File(p, "r")["mass"].shape[0] == per_file for p in paths)
        if not ok:
            for p in paths:
                os.remove(p)
            paths = write_jet_files(directory, name=name, n_files=n_files, jets_per_file=per_file,
                                    seed=seed, signal=name == "top")
        out[name] = paths
    return out["qcd"], out["top"], 2 * n_files * per_file


def bench_raw(paths: list[str], block: int = 4096) -> float:
    """Jets/s reading constituents + mass with h5py alone into preallocated buffers."""
    buf = np.empty((block, 200, 4), np.float32)
    mbuf = np.empty((block,), np.float32)
    n, t = 0, time.perf_counter()
    for p in paths:
        with h5py.File(p, "r") as f:
            c, m = f["constituents"], f["mass"]
            for a in range(0, c.shape[0], block):
                b = min(a + block, c.shape[0])
                c.read_direct(buf, np.s_[a:b], np.s_[0:b - a])
                m.read_direct(mbuf, np.s_[a:b], np.s_[0:b - a])
                n += b - a
    return n / (time.perf_counter() - t)


def bench_generator(qcd: list[str], top: list[str], seconds: float) -> float:
    """Jets/s of a per-jet Python generator through from_generator (time-boxed)."""

    def gen():
        for pq, pt in zip(qcd, top):
            with h5py.File(pq, "r") as fq, h5py.File(pt, "r") as ft:
                n = min(fq["mass"].shape[0], ft["mass"].shape[0])
                for a in range(0, n, 1024):
                    xq, mq = fq["constituents"][a:a + 1024], fq["mass"][a:a + 1024]
                    xt, mt = ft["constituents"][a:a + 1024], ft["mass"][a:a + 1024]
                    for i in range(len(mq)):
                        yield {"x": (xq[i] - 0.0) / 50.0, "m": (mq[i] - 100.0) / 50.0}, 0
                        yield {"x": (xt[i] - 0.0) / 50.0, "m": (mt[i] - 100.0) / 50.0}, 1

    sig = ({"x": tf.TensorSpec((200, 4), tf.float32), "m": tf.TensorSpec((), tf.float32)},
           tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig).batch(256).prefetch(2)
    n_batches = max(1, int(seconds * 2_500 / 256))  # ~`seconds` at the ~2.5k jets/s such loops reach
    return epoch_rate(ds.take(n_batches))[0]


def epoch_rate(ds: tf.data.Dataset) -> tuple[float, int]:
    """Jets/s of one epoch consumed inside the graph, as ``keras.Model.fit`` consumes it.

    (A Python ``for`` loop adds ~0.13 ms per batch on this kind of machine.)
    """
    t = time.perf_counter()
    n = int(ds.reduce(tf.constant(0, tf.int64),
                      lambda s, el: s + tf.shape(el[1], out_type=tf.int64)[0]).numpy())
    return n / (time.perf_counter() - t), n


def median_rate(ds: tf.data.Dataset, passes: int) -> tuple[float, list[float]]:
    """Median jets/s over ``passes`` epochs after a warm-up epoch (single epochs vary by up to 2x), and the rates."""
    rates = [epoch_rate(ds)[0] for _ in range(passes + 1)][1:]
    return float(np.median(rates)), rates


def cache_read_seconds(make_pipe, rows: int = 1280) -> tuple[float, float]:
    """Seconds to copy every row out of a reopened disk cache in one thread, as a new pipeline's first
    epoch does: checking each block against its checksum, and with the checks marked done beforehand
    (private attribute, benchmark only). Each pass gets a new pipeline, so both map the files afresh."""
    times = []
    for check in (True, False):
        pipe = make_pipe()
        if not check:
            for sample_cache in pipe.cache._samples:
                sample_cache.verified[:] = True
        out = {k: np.empty((rows,) + shape, dtype) for k, (shape, dtype) in pipe.out_spec.items()}
        t = time.perf_counter()
        for sample, layout in enumerate(pipe.layouts):
            for a in range(0, layout.n_rows, rows):
                b = min(a + rows, layout.n_rows)
                pipe.cache.read(sample, a, b, {k: v[:b - a] for k, v in out.items()}, 0)
        times.append(time.perf_counter() - t)
    return times[0], times[1]


def input_wait_fraction(ds: tf.data.Dataset, steps: int) -> tuple[float, float]:
    """Fraction of training-loop time spent in ``next(iterator)``; also ms per step."""
    import keras

    model = keras.Sequential([
        keras.Input((200, 4)), keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1),
    ])
    opt = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.cast(y, tf.float32)[:, None], model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    it = iter(ds.repeat())
    x, y = next(it)
    step(x["x"], y).numpy()  # trace
    wait = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        a = time.perf_counter()
        x, y = next(it)
        wait += time.perf_counter() - a
        step(x["x"], y)
    loss = step(x["x"], y).numpy()
    total = time.perf_counter() - t0
    assert np.isfinite(loss)
    return wait / total, 1e3 * total / steps


def _pad_jagged(offsets: np.ndarray, values: list[np.ndarray], pad: int) -> np.ndarray:
    """What a user's loop does: (n, pad, k) zero-padded from flat values and offsets."""
    counts = np.diff(offsets)
    pos = np.arange(offsets[-1] - offsets[0]) - np.repeat(offsets[:-1] - offsets[0], counts)
    keep = pos < pad
    event = np.repeat(np.arange(len(counts)), counts)[keep]
    out = np.zeros((len(counts), pad, len(values)), np.float32)
    for j, v in enumerate(values):
        out[event, pos[keep], j] = v[keep]
    return out


def bench_uproot(paths: list[str], *, pad: bool, step: int = 10_000) -> float:
    """Jets/s of uproot.iterate over the particle branches and jet_mass (padded to numpy if ``pad``)."""
    import awkward as ak
    import uproot

    from hepflow.data.formats.ntuples import PARTICLE_BRANCHES

    n, t = 0, time.perf_counter()
    for arrays in uproot.iterate([f"{p}:Events" for p in paths], list(PARTICLE_BRANCHES) + ["jet_mass"],
                                 step_size=step, library="ak", how=dict):
        if pad:
            layouts = [ak.to_layout(arrays[b]) for b in PARTICLE_BRANCHES]
            offsets = np.asarray(layouts[0].offsets)
            _pad_jagged(offsets, [np.asarray(lay.content.data)[offsets[0]:offsets[-1]] for lay in layouts], 200)
            ak.to_numpy(arrays["jet_mass"])
        n += len(arrays["jet_mass"])
    return n / (time.perf_counter() - t)


def bench_pyarrow(paths: list[str], *, pad: bool, step: int = 10_000) -> float:
    """Jets/s of pyarrow's iter_batches over the particle columns and jet_mass (padded if ``pad``)."""
    import pyarrow.parquet as pq

    from hepflow.data.formats.ntuples import PARTICLE_BRANCHES

    n, t = 0, time.perf_counter()
    for p in paths:
        with pq.ParquetFile(p, memory_map=True) as f:
            for batch in f.iter_batches(batch_size=step, columns=list(PARTICLE_BRANCHES) + ["jet_mass"]):
                if pad:
                    cols = [batch.column(b) for b in PARTICLE_BRANCHES]
                    offsets = np.asarray(cols[0].offsets)
                    _pad_jagged(offsets, [c.flatten().to_numpy() for c in cols], 200)
                    batch.column("jet_mass").to_numpy()
                n += batch.num_rows
    return n / (time.perf_counter() - t)


def bench_weaver(paths: list[str]) -> float | None:
    """Jets/s of weaver-core's loader on the ROOT files, or None when weaver is not installed."""
    try:
        import weaver  # noqa: F401 -- optional peer: weaver-core (needs PyTorch)
    except ImportError:
        return None
    return None  # a data config for weaver is not written yet: reported as not measured


def bench_formats(args, formats: list[str]) -> None:
    """ROOT and Parquet against their own libraries' loops and against HDF5, on the same jets."""
    from hepflow.data.formats.ntuples import PARTICLE_BRANCHES, write_jets_parquet, write_jets_root

    size = args.size_gb or (0.05 if args.quick else 0.3)
    os.makedirs(args.dir, exist_ok=True)
    qcd, top, n_jets = make_files(args.dir, size, args.files)
    writers = {"root": write_jets_root, "parquet": write_jets_parquet}
    files: dict[str, dict[str, list[str]]] = {}
    for fmt in formats:
        files[fmt] = {}
        for cls, paths in (("qcd", qcd), ("top", top)):
            out = []
            for p in paths:
                target = os.path.splitext(p)[0] + f".{fmt}"
                if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(p):
                    writers[fmt](p, target, seed=1)
                out.append(target)
            files[fmt][cls] = out
    h5_specs = [SampleSpec(name=c, files=ps, keys={"x": "constituents", "m": "mass"}, label=i)
                for i, (c, ps) in enumerate((("qcd", qcd), ("top", top)))]
    norm = Normalize(offsets={"m": 100.0}, scales={"x": 50.0, "m": 50.0})
    opts = dict(batch_size=256, transform=norm, seed=1, num_readers=args.readers)

    def hepflow_rates(specs) -> tuple[float, float, float]:
        streaming = max(epoch_rate(make_dataset(specs, **opts))[0] for _ in range(2))
        ds = make_dataset(specs, cache="memory", **opts)
        first = epoch_rate(ds)[0]
        cached = max(epoch_rate(ds)[0] for _ in range(2))
        return streaming, first, cached

    bench_raw(qcd + top)
    raw = max(bench_raw(qcd + top) for _ in range(2))
    h5 = hepflow_rates(h5_specs)
    rows = [("h5py alone (HDF5 limit)", raw), ("hepflow HDF5 streaming epoch", h5[0]),
            ("hepflow HDF5 first epoch (fills cache)", h5[1]), ("hepflow HDF5 cached epoch", h5[2])]
    out: dict[str, float] = {}
    for fmt in formats:
        paths = files[fmt]["qcd"] + files[fmt]["top"]
        lib = bench_uproot if fmt == "root" else bench_pyarrow
        lib(paths, pad=False)  # page cache
        limit = max(lib(paths, pad=False) for _ in range(2))
        padded = max(lib(paths, pad=True) for _ in range(2))
        specs = [SampleSpec(name=c, files=files[fmt][c], label=i, pad=200, sort_by="part_pt",
                            keys={"x": list(PARTICLE_BRANCHES), "m": "jet_mass"}) for i, c in enumerate(("qcd", "top"))]
        unsorted = [SampleSpec(**{**s.to_dict(), "sort_by": None}) for s in specs]
        streaming, first, cached = hepflow_rates(specs)
        streaming_unsorted = max(epoch_rate(make_dataset(unsorted, **opts))[0] for _ in range(2))
        name = "uproot.iterate" if fmt == "root" else "pyarrow iter_batches"
        rows += [(f"{name} (the {fmt} limit)", limit), (f"{name} + padding to numpy", padded),
                 (f"hepflow {fmt} streaming epoch (sort_by part_pt)", streaming),
                 (f"hepflow {fmt} streaming epoch (file order)", streaming_unsorted),
                 (f"hepflow {fmt} first epoch (fills cache)", first), (f"hepflow {fmt} cached epoch", cached)]
        lib_name = "uproot" if fmt == "root" else "pyarrow"
        out.update({f"{fmt}_vs_{lib_name}": round(streaming / limit, 3),
                    f"{fmt}_unsorted_vs_{lib_name}": round(streaming_unsorted / limit, 3),
                    f"{fmt}_vs_{lib_name}_padded": round(streaming / padded, 3),
                    f"{fmt}_vs_hdf5": round(streaming / h5[0], 3),
                    f"{fmt}_cached_vs_hdf5_cached": round(cached / h5[2], 3)})
        if fmt == "root":
            weaver = bench_weaver(paths)
            out["root_vs_weaver"] = None if weaver is None else round(streaming / weaver, 3)
    mb = {fmt: sum(os.path.getsize(p) for c in files[fmt].values() for p in c) / 1e6 for fmt in formats}
    print(f"\nhepflow sources benchmark — {n_jets} jets, {len(qcd) + len(top)} files per format, batch 256, mix 1:1, "
          f"Normalize; {os.cpu_count()} cores, {platform.machine()}; files: HDF5 {n_jets * JET_BYTES / 1e6:.0f} MB, "
          + ", ".join(f"{k} {v:.0f} MB" for k, v in mb.items()))
    print(f"{'method':48s} {'jets/s':>12s} {'vs h5py':>8s}")
    for name, rate in rows:
        print(f"{name:48s} {rate:12,.0f} {rate / raw:8.2f}")
    if "root" in formats and out.get("root_vs_weaver") is None:
        print("weaver-core: not installed here (it needs PyTorch); not measured")
    print(json.dumps({**out, "jets": n_jets, "cores": os.cpu_count()}))


SWEEP_TRANSFORMS = ("normalize", "constituents", "images")


def sweep_transform(name: str):
    """The transform of one row of the core sweep (keys ``constituents`` and ``mass``)."""
    from hepflow.ops.jets import ConstituentFeatures, JetImages

    if name == "normalize":
        return Normalize(offsets={"mass": 100.0}, scales={"constituents": 50.0, "mass": 50.0})
    if name == "constituents":
        return ConstituentFeatures(max_particles=100)
    return JetImages(npix=37)


def torch_loader_rate(qcd: list[str], top: list[str], transform: str, passes: int) -> float | None:
    """Jets/s of a PyTorch DataLoader over h5py blocks doing the same work in numpy (None without torch)."""
    try:
        import torch  # noqa: F401  -- optional extra: only to compare with what PyTorch users write
    except ImportError:
        return None
    from torch.utils.data import DataLoader, Dataset

    def work(x: np.ndarray) -> np.ndarray:
        if transform == "normalize":
            return x / 50.0
        pt = np.hypot(x[..., 1], x[..., 2])
        eta = np.arcsinh(np.divide(x[..., 3], pt, out=np.zeros_like(pt), where=pt > 0))
        phi = np.arctan2(x[..., 2], x[..., 1])
        if transform == "constituents":
            return np.stack([eta, phi, np.log1p(pt), np.log1p(x[..., 0])], axis=-1)[:, :100]
        img = np.zeros((len(x), 37, 37), np.float32)
        i = np.clip(((eta - eta[:, :1]) + 1) * 18, 0, 36).astype(int)
        j = np.clip(((phi - phi[:, :1]) + 1) * 18, 0, 36).astype(int)
        np.add.at(img, (np.repeat(np.arange(len(x)), x.shape[1]), i.ravel(), j.ravel()), pt.ravel())
        return img

    class Blocks(Dataset):
        def __init__(self):
            self.items = [(p, a) for p in qcd + top for a in range(0, h5py.File(p, "r")["mass"].shape[0], 256)]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, k):
            p, a = self.items[k]
            with h5py.File(p, "r") as f:
                return work(f["constituents"][a:a + 256])

    cores = len(os.sched_getaffinity(0))
    loader = DataLoader(Blocks(), batch_size=None, shuffle=True, num_workers=cores, persistent_workers=True)
    rates = []
    for _ in range(passes + 1):
        t0, n = time.perf_counter(), 0
        for b in loader:
            n += len(b)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates[1:]))


def sweep_child(args) -> None:
    """One row of the core sweep, in a process already pinned by the parent; prints ``RATE {json}``."""
    qcd, top, _ = make_files(args.dir, args.size_gb or 0.3, args.files)
    out: dict[str, float | None] = {}
    if args.sweep_child == "raw":
        out["rate"] = max(bench_raw(qcd + top) for _ in range(3))
    elif args.sweep_child.startswith("torch_"):
        out["rate"] = torch_loader_rate(qcd, top, args.sweep_child[6:], args.passes)
    else:
        specs = [SampleSpec(name="qcd", files=qcd, keys=["constituents", "mass"], label=0),
                 SampleSpec(name="top", files=top, keys=["constituents", "mass"], label=1)]
        ds = make_dataset(specs, batch_size=256, transform=sweep_transform(args.sweep_child), seed=1)
        out["rate"], out["rates"] = median_rate(ds, args.passes)
    print("RATE " + json.dumps(out), flush=True)


def sweep_cores(args) -> None:
    """The core sweep: every transform at every core count, each in its own pinned process."""
    import subprocess
    import sys

    cores = [int(c) for c in args.cores.split(",") if c]
    avail = sorted(os.sched_getaffinity(0))
    if max(cores) > len(avail):
        raise SystemExit(f"--cores asks for {max(cores)} cores; this process may use {len(avail)}. Received: {args.cores}")
    make_files(args.dir, args.size_gb or 0.3, args.files)  # written once, before any timing
    rows: dict[str, dict[int, float | None]] = {}
    names = ["raw"] + list(SWEEP_TRANSFORMS) + [f"torch_{t}" for t in SWEEP_TRANSFORMS]
    for name in names:
        rows[name] = {}
        for c in cores:
            if name.startswith("torch_") and cores[0] in rows[name] and rows[name][cores[0]] is None:
                rows[name][c] = None  # torch is not installed: measured once, not per core count
                continue
            cmd = ["taskset", "-c", ",".join(map(str, avail[:c])), sys.executable, os.path.abspath(__file__),
                   "--sweep-child", name, "--dir", args.dir, "--files", str(args.files), "--passes", str(args.passes)]
            if args.size_gb:
                cmd += ["--size-gb", str(args.size_gb)]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RATE ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(f"{name} on {c} cores failed:\n{proc.stderr[-2000:]}")
            rows[name][c] = json.loads(line[-1][5:])["rate"]
            print(f"{name:24s} {c:2d} cores: " + ("not measured (torch not installed)" if rows[name][c] is None
                                                  else f"{rows[name][c]:10,.0f} jets/s"), flush=True)
    labels = {"raw": "h5py read, one thread (limit)", "normalize": "hepflow, Normalize",
              "constituents": "hepflow, ConstituentFeatures(100)", "images": "hepflow, JetImages 37x37",
              "torch_normalize": "torch DataLoader, Normalize", "torch_constituents": "torch DataLoader, particles",
              "torch_images": "torch DataLoader, images"}
    print(f"\ncore sweep — median of {args.passes} streaming epochs, batch 256, mix 1:1; {platform.machine()}")
    print(f"{'method':36s} " + " ".join(f"{str(c) + ' cores':>12s}" for c in cores))
    for name, by in rows.items():
        print(f"{labels[name]:36s} " + " ".join(f"{by[c]:12,.0f}" if by.get(c) else f"{'—':>12s}" for c in cores))
    lo, hi = cores[0], cores[-1]
    key = f"scaling_{hi}_vs_{lo}"
    print(json.dumps({key: {n: round(rows[n][hi] / rows[n][lo], 3) for n in SWEEP_TRANSFORMS if rows[n].get(lo)},
                      "jets_per_s": {n: {str(c): round(v) for c, v in by.items() if v} for n, by in rows.items()},
                      "torch": rows["torch_normalize"].get(lo) is not None}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~100 MB of data; runs in under a minute")
    ap.add_argument("--size-gb", type=float, default=None, help="total size of the files (default 1.0)")
    ap.add_argument("--files", type=int, default=4, help="files per class")
    ap.add_argument("--dir", default="bench_data", help="where the files are written (reused)")
    ap.add_argument("--readers", type=int, default=None, help="num_readers (default: hepflow's)")
    ap.add_argument("--cores", default=None, help="core sweep, e.g. 1,2 or 2,8,16 (see the module docstring)")
    ap.add_argument("--passes", type=int, default=5, help="epochs per row of the core sweep (median)")
    ap.add_argument("--sweep-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--format", default="hdf5", help="hdf5 (default), or root, parquet or root,parquet: the other "
                    "sources against their own libraries and HDF5 (default size 0.3 GB of HDF5 jets)")
    args = ap.parse_args()
    if args.sweep_child:
        sweep_child(args)
        return
    if args.cores:
        sweep_cores(args)
        return
    formats = [f for f in args.format.split(",") if f]
    if formats != ["hdf5"]:
        bad = [f for f in formats if f not in ("root", "parquet")]
        if bad:
            ap.error(f"--format takes hdf5, root, parquet or root,parquet. Received: {args.format}")
        bench_formats(args, formats)
        return
    size = args.size_gb or (0.1 if args.quick else 1.0)
    os.makedirs(args.dir, exist_ok=True)
    qcd, top, n_jets = make_files(args.dir, size, args.files)
    paths = qcd + top
    bench_raw(paths)  # warm the page cache: every method reads from memory
    raw = max(bench_raw(paths) for _ in range(2))
    gen = bench_generator(qcd, top, seconds=3 if args.quick else 8)

    specs = [SampleSpec(name="qcd", files=qcd, keys={"x": "constituents", "m": "mass"}, label=0, rate=1),
             SampleSpec(name="top", files=top, keys={"x": "constituents", "m": "mass"}, label=1, rate=1)]
    norm = Normalize(offsets={"m": 100.0}, scales={"x": 50.0, "m": 50.0})
    opts = dict(batch_size=256, transform=norm, seed=1, num_readers=args.readers)
    rss0 = reset_peak_rss()
    streaming, n_epoch = epoch_rate(make_dataset(specs, **opts))
    streaming = max(streaming, epoch_rate(make_dataset(specs, **opts))[0])
    rss_stream = peak_rss_mb()
    cached_ds = make_dataset(specs, cache="memory", **opts)
    first, _ = epoch_rate(cached_ds)
    cached = max(epoch_rate(cached_ds)[0] for _ in range(2))
    wait, ms_step = input_wait_fraction(cached_ds, steps=100 if args.quick else 400)
    rss_memory_cache = peak_rss_mb()
    del cached_ds
    disk = tempfile.mkdtemp(prefix="disk_cache_", dir=args.dir)  # the bench's own folder, removed below
    try:
        filling = Pipeline(specs, cache=disk, **opts)
        while not all(filling.cache.complete(i) for i in range(len(specs))):  # "shortest" epochs fill it over two
            epoch_rate(filling.dataset)
        del filling
        checking, checked = [], []
        for _ in range(3 if args.quick else 7):  # medians: single epochs flip between two speed levels
            reopened = make_dataset(specs, cache=disk, **opts)  # a new pipeline: no block checked yet
            checking.append(epoch_rate(reopened)[0])
            checked.append(epoch_rate(reopened)[0])
        disk_checking, disk_checked = float(np.median(checking)), float(np.median(checked))
        read_checking, read_checked = cache_read_seconds(lambda: Pipeline(specs, cache=disk, **opts))
    finally:
        shutil.rmtree(disk, ignore_errors=True)

    rows = [
        ("h5py alone (limit)", raw),
        ("python generator + from_generator", gen),
        ("hepflow streaming epoch (no cache)", streaming),
        ("hepflow first epoch (fills cache)", first),
        ("hepflow cached epoch", cached),
        ("disk cache, new pipeline (checks; median)", disk_checking),
        ("disk cache, next epoch (checked; median)", disk_checked),
    ]
    print(f"\nhepflow pipeline benchmark — {n_jets} jets ({n_jets * JET_BYTES / 1e9:.2f} GB), "
          f"{len(paths)} files, batch 256, mix 1:1, Normalize; {os.cpu_count()} cores, {platform.machine()}")
    print(f"{'method':40s} {'jets/s':>12s} {'vs h5py':>8s}")
    for name, rate in rows:
        print(f"{name:40s} {rate:12,.0f} {rate / raw:8.2f}")
    gb = n_jets * JET_BYTES / 1e9
    print(f"disk cache read in one thread, all rows: {gb / read_checking:.1f} GB/s checking each block, "
          f"{gb / read_checked:.1f} GB/s without checks (the checks cost {100 * (read_checking / read_checked - 1):.0f} % "
          "of the copy, once per block and process)")
    print(f"Keras step on the cached pipeline: {ms_step:.2f} ms/step, input wait {100 * wait:.1f} %")
    print(f"peak RSS: {rss_stream:.0f} MB during streaming epochs (process before them: {rss0:.0f} MB, "
          f"so the pipeline added {rss_stream - rss0:.0f} MB); {rss_memory_cache:.0f} MB with the memory cache")
    print(json.dumps({
        "first_epoch_vs_raw": round(first / raw, 3),
        "streaming_vs_raw": round(streaming / raw, 3),
        "vs_python_generator": round(streaming / gen, 1),
        "cached_vs_first": round(cached / first, 2),
        "cached_vs_raw": round(cached / raw, 3),
        "disk_checking_vs_checked": round(disk_checking / disk_checked, 3),
        "input_wait_fraction": round(wait, 4),
        "peak_rss_mb": round(rss_stream, 0),
        "pipeline_rss_mb": round(rss_stream - rss0, 0),
        "peak_rss_with_memory_cache_mb": round(rss_memory_cache, 0),
        "cache_read_checking_vs_checked": round(read_checked / read_checking, 3),
        "raw_jets_per_s": round(raw), "jets": n_jets,
    }))


if __name__ == "__main__":
    main()
