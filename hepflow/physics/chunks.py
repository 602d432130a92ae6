"""Chunked, resumable, parallel generation: the file bookkeeping the generators share.

A generator splits its job into chunks, each with its own seed. A chunk is written to a
temporary name and renamed, then a sidecar ``.<file>.json`` records how it was made; a chunk
counts as done only when both exist and the sidecar matches the current job. Re-running a
job after an interruption therefore finishes it without duplicating or losing records.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm import tqdm

from hepflow.errors import ConfigError
from hepflow.io import write_json_atomic

__all__ = ["sidecar_path", "chunk_complete", "write_sidecar", "run_chunks"]


def sidecar_path(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.json")


def write_sidecar(path: str, record: Mapping[str, Any]) -> None:
    """Marks ``path`` complete (call after the file itself was renamed into place)."""
    write_json_atomic(sidecar_path(path), dict(record))


def chunk_complete(path: str, counts: Mapping[str, int], want: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a complete chunk of this job.

    Args:
        path: The chunk file.
        counts: Sidecar fields that must match for the chunk to count (e.g. ``{"n_jets": 1000}``).
        want: Sidecar fields describing the job (seed, format, settings, ...); a complete chunk
            whose fields differ belongs to another job. Fields missing from an older sidecar
            are not compared.

    Raises:
        ValueError: the chunk is complete but belongs to another job (resuming into it would
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
                             "Use another --out folder.")
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
