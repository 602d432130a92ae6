"""Chunked, resumable, parallel generation: the file bookkeeping the generators share.

A generator splits its job into chunks, each with its own seed. A chunk is written to a
temporary name and renamed, then a sidecar ``.<file>.json`` records how it was made; a chunk
counts as done only when both exist and the sidecar matches the current job. Re-running a
job after an interruption therefore finishes it without duplicating or losing records.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from hepflow.errors import ConfigError
from hepflow.io import atomic_path, remove_stale_tmp, write_json_atomic

__all__ = ["sidecar_path", "chunk_complete", "write_sidecar", "write_native_chunk", "run_chunks", "chunk_path",
           "chunk_plan", "generate_chunks"]


def sidecar_path(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.json")


def write_sidecar(path: str, record: Mapping[str, Any]) -> None:
    """Marks ``path`` complete (call after the file itself was renamed into place)."""
    write_json_atomic(sidecar_path(path), dict(record))


def write_native_chunk(path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """One chunk in hepflow's native layout, atomically (temporary file, then rename).

    One contiguous, uncompressed dataset per feature: read with ``os.preadv`` by the pipeline
    and by tf.data service workers. (Measured alternative: Blosc-LZ4 with byte shuffle stores
    padded jets 3.7x smaller and still reads ~1M jets/s per core; see docs/top_tagging.md.)
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v


def chunk_complete(path: str, counts: Mapping[str, int], want: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a complete chunk of this job.

    Args:
        path: The chunk file.
        counts: Sidecar fields that must match for the chunk to count (e.g. ``{"n_jets": 1000}``).
        want: Sidecar fields describing the job (seed, format, settings, ...); a complete chunk
            whose fields differ belongs to another job. Fields missing from an older sidecar
            are not compared.

    Raises:
        ConfigError: the chunk is complete but belongs to another job (resuming into it would
            mix two runs).
    """
    try:
        with open(sidecar_path(path)) as f:
            record = json.load(f)
        complete = all(record[k] == v for k, v in counts.items()) and os.path.exists(path)
    except (OSError, ValueError, KeyError):
        return False
    want = json.loads(json.dumps(dict(want)))
    have = {k: record.get(k, want[k]) for k in want}
    if complete and have != want:
        raise ConfigError(f"{path} was generated with {have}, not {want}: the output folder holds another run. "
                          f"Use another --out folder. Received: {have}")
    return complete


def run_chunks(run: Callable[[tuple], dict], jobs: Sequence[tuple], *, workers: int, total: int, done: int,
               size: Callable[[dict], int], unit: str, progress: bool = True) -> list[dict]:
    """Runs ``run(job)`` for every job, in ``workers`` spawned processes, with a progress bar.

    ``size(result)`` is the number of records a finished job adds to the bar; ``done`` records
    were already there.
    """
    results = []
    with tqdm(total=total, unit=unit, disable=not progress, desc="generating") as bar:
        bar.update(done)
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(run(job))
                bar.update(size(results[-1]))
        else:
            with mp.get_context("spawn").Pool(workers) as pool:
                for r in pool.imap_unordered(run, jobs):
                    results.append(r)
                    bar.update(size(r))
    return results


def chunk_path(out_dir: str, name: str, index: int) -> str:
    """``<out_dir>/<name>_NNNNN.h5``, the file of chunk ``index`` of ``name`` (a process or a particle)."""
    return os.path.join(out_dir, f"{name}_{index:05d}.h5")


def chunk_plan(counts: Mapping[str, int], chunk_size: int) -> list[tuple[str, int, int]]:
    """``(name, index, records)`` of every chunk: ``ceil(counts[name] / chunk_size)`` per name, the last one
    of a name holding what is left."""
    return [(name, index, min(chunk_size, total - index * chunk_size))
            for name, total in counts.items() for index in range(math.ceil(total / chunk_size))]


def generate_chunks(out_dir: str, *, counts: Mapping[str, int], chunk_size: int,
                    job_for: Callable[[str, int, int], tuple], want_for: Callable[[tuple], Mapping[str, Any]],
                    run: Callable[[tuple], dict], size_key: str, unit: str, workers: int,
                    progress: bool = True) -> tuple[list[dict], list[dict], float]:
    """The chunked generation both generators share: plan, skip what is done, run the rest, collect.

    Each name (a process or a particle) gets ``ceil(counts[name] / chunk_size)`` chunk files;
    complete chunks of the same job are kept, others are made by ``run`` in ``workers``
    processes, chunk 0 of every name first, then chunk 1, ..., so that a stopped run leaves the
    names balanced.

    Args:
        counts: Name → records.
        chunk_size: Records per chunk (the last one of a name may hold fewer).
        job_for: ``(name, index, n)`` → the job tuple ``run`` takes.
        want_for: job → the sidecar fields that identify the job (seed, settings, ...).
        run: Makes one chunk (in a worker process); returns its record with ``size_key``.
        size_key: The sidecar field counting records (``n_jets``, ``n_showers``).
        unit: The progress bar's unit.

    Returns:
        ``(sidecars of every chunk by name and index, records of the chunks made now, seconds)``.
    """
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_tmp(out_dir)
    todo, done = [], []
    for name, index, n in chunk_plan(counts, chunk_size):
        job = job_for(name, index, n)
        complete = chunk_complete(chunk_path(out_dir, name, index), {size_key: n}, want_for(job))
        (done if complete else todo).append((name, index, n, job))
    todo.sort(key=lambda j: j[1])
    t0 = time.perf_counter()
    results = run_chunks(run, [j[3] for j in todo], workers=workers, total=sum(counts.values()),
                         done=sum(j[2] for j in done), size=lambda r: r[size_key], unit=unit, progress=progress)
    elapsed = time.perf_counter() - t0
    sidecars = []
    for name, index, _, _ in sorted(todo + done, key=lambda j: (j[0], j[1])):
        with open(sidecar_path(chunk_path(out_dir, name, index))) as f:
            sidecars.append(json.load(f))
    return sidecars, results, elapsed
