"""``generate_calo_showers``: CaloGAN-format shower files from :mod:`hepflow.physics.calo_sim`.

Chunk files ``<particle>_NNNNN.h5`` in the published CaloGAN layout, each with its own seed,
written atomically and marked complete by a sidecar; re-running the same command resumes.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hepflow.errors import ConfigError
from hepflow.data.formats.calogan import write_calogan
from hepflow.io import write_json_atomic
from hepflow.physics.calo_sim import GEOMETRY, PARTICLES, simulate
from hepflow.physics.chunks import generate_chunks, write_sidecar

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
    energy_range = (float(energy_range[0]), float(energy_range[1]))
    chunks, results, elapsed = generate_chunks(
        out_dir, counts={p: n_showers for p in particles}, chunk_size=chunk_showers,
        job_for=lambda p, index, n: (out_dir, p, index, n, _chunk_seed(seed, p, index), energy_range),
        want_for=lambda job: {"seed": job[4], "energy_range": list(energy_range)},
        run=_run_chunk, size_key="n_showers", unit="shower", workers=workers, progress=progress)
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
