"""``generate_calo_showers``: CaloGAN-format shower files from :mod:`hepflow.physics.calo_sim`.

Chunk files ``<particle>_NNNNN.h5`` in the published CaloGAN layout, each with its own seed,
written atomically and marked complete by a sidecar; re-running the same command resumes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hepflow.errors import ConfigError
from hepflow.data.formats.calogan import write_calogan
from hepflow.io import remove_stale_tmp, write_json_atomic
from hepflow.physics.calo_sim import GEOMETRY, PARTICLES, simulate
from hepflow.physics.chunks import (chunk_complete, run_chunks, sidecar_path,
                                    write_sidecar)

__all__ = ["generate_calo_showers"]


def _chunk_seed(seed: int, particle: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, PARTICLES.index(particle), index]).generate_state(1)[0])


def _run_chunk(job: tuple) -> dict[str, Any]:
    out_dir, particle, index, n, seed, energy_range = job
    path = os.path.join(out_dir, f"{particle}_{index:05d}.h5")
    t = time.perf_counter()
    write_calogan(path, simulate(particle, n, seed=seed, energy_range=energy_range))
    record = {"file": os.path.basename(path), "particle": particle, "seed": seed, "n_showers": n,
              "energy_range": list(energy_range)}
    write_sidecar(path, record)
    return {**record, "seconds": time.perf_counter() - t}


def generate_calo_showers(out_dir: str, *, particles: Sequence[str] = PARTICLES, n_showers: int,
                          chunk_showers: int = 5000, workers: int = 2, seed: int = 1,
                          energy_range: tuple[float, float] = (1.0, 100.0), progress: bool = True) -> dict[str, Any]:
    """Simulates ``n_showers`` showers per particle into ``out_dir``; resumes an interrupted run.

    Returns:
        The manifest (also ``out_dir/manifest.json``): geometry, seeds, counts per particle
        and ``generated_this_run`` with ``showers_per_s``.
    """
    unknown = [p for p in particles if p not in PARTICLES]
    if unknown or not particles:
        raise ConfigError(f"particles must be some of {PARTICLES}. Received: {list(particles)}")
    if n_showers <= 0 or chunk_showers <= 0 or workers <= 0:
        raise ConfigError("n_showers, chunk_showers and workers must be > 0. "
                          f"Received: {n_showers}, {chunk_showers}, {workers}")
    if not (len(energy_range) == 2 and 0 < float(energy_range[0]) < float(energy_range[1])):
        raise ConfigError(f"energy_range must be (Emin, Emax) in GeV with 0 < Emin < Emax. "
                          f"Received: energy_range={tuple(energy_range)!r}")
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_tmp(out_dir)
    energy_range = (float(energy_range[0]), float(energy_range[1]))
    jobs, done = [], []
    for particle in particles:
        for index in range(math.ceil(n_showers / chunk_showers)):
            n = min(chunk_showers, n_showers - index * chunk_showers)
            job = (out_dir, particle, index, n, _chunk_seed(seed, particle, index), energy_range)
            path = os.path.join(out_dir, f"{particle}_{index:05d}.h5")
            want = {"seed": job[4], "energy_range": list(energy_range)}
            (done if chunk_complete(path, {"n_showers": n}, want) else jobs).append(job)
    t0 = time.perf_counter()
    results = run_chunks(_run_chunk, jobs, workers=workers, total=n_showers * len(particles),
                         done=sum(j[3] for j in done), size=lambda r: r["n_showers"], unit="shower",
                         progress=progress)
    elapsed = time.perf_counter() - t0
    chunks = []
    for job in sorted(jobs + done, key=lambda j: (j[1], j[2])):
        with open(sidecar_path(os.path.join(out_dir, f"{job[1]}_{job[2]:05d}.h5"))) as f:
            chunks.append(json.load(f))
    made = sum(r["n_showers"] for r in results)
    manifest = {
        "dataset": "calo_showers", "format": "calogan", "seed": seed, "n_showers": n_showers,
        "chunk_showers": chunk_showers, "energy_range_gev": list(energy_range),
        "geometry": dataclasses.asdict(GEOMETRY),
        "counts": {p: sum(c["n_showers"] for c in chunks if c["particle"] == p) for p in particles},
        "chunks": chunks,
        "generated_this_run": {"showers": made, "seconds": elapsed,
                               "showers_per_s": made / elapsed if made else None},
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return manifest
