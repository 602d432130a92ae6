"""hepflow's jet files rewritten as the ntuples users bring: ROOT TTrees and Parquet tables.

Each jet becomes one entry with per-particle (jagged) branches ``part_E``, ``part_px``,
``part_py``, ``part_pz``, ``part_pt`` holding only its real constituents, in a shuffled order
per jet (as a detector's particle list comes, so that ``sort_by: part_pt`` has work to do),
and flat branches ``jet_pt``, ``jet_mass`` and ``label``. Used by the tests and by
``tools/bench_pipeline.py --format root,parquet``; needs the ``[root]`` extra.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from hepflow.io import atomic_path

__all__ = ["jet_branches", "write_jets_root", "write_jets_parquet", "PARTICLE_BRANCHES"]

PARTICLE_BRANCHES = ("part_E", "part_px", "part_py", "part_pz")


def jet_branches(h5_path: str, *, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts per jet and flat arrays of every branch, read from a hepflow jet file."""
    with h5py.File(h5_path, "r") as f:
        c = f["constituents"][...].astype(np.float32)
        n = len(c)
        label = f["label"][...].astype(np.int32) if "label" in f else np.zeros(n, np.int32)
        pt = f["pt"][...].astype(np.float32)
        mass = f["mass"][...].astype(np.float32)
    real = c[..., 0] > 0
    counts = real.sum(axis=1)
    rng = np.random.default_rng(seed)
    order = np.argsort(np.where(real, rng.random(real.shape), 2.0), axis=1)  # real particles first, shuffled
    shuffled = np.take_along_axis(c, order[..., None], axis=1)
    keep = np.arange(c.shape[1])[None, :] < counts[:, None]
    flat = shuffled[keep]
    branches = {name: np.ascontiguousarray(flat[:, j]) for j, name in enumerate(PARTICLE_BRANCHES)}
    branches["part_pt"] = np.hypot(flat[:, 1], flat[:, 2]).astype(np.float32)
    return counts.astype(np.int64), {**branches, "jet_pt": pt, "jet_mass": mass, "label": label}


def write_jets_root(h5_path: str, out_path: str, *, seed: int = 0, basket_entries: int = 10_000,
                    tree: str = "Events") -> int:
    """Writes the jets of ``h5_path`` as a TTree (one ``extend`` per ``basket_entries``); returns the entries."""
    import awkward as ak  # optional extra [root]
    import uproot  # optional extra [root]

    counts, b = jet_branches(h5_path, seed=seed)
    starts = np.concatenate([[0], np.cumsum(counts)])
    jagged = ("part_pt",) + PARTICLE_BRANCHES
    with atomic_path(out_path, suffix=".root") as tmp:
        with uproot.recreate(tmp) as f:
            for a in range(0, len(counts), basket_entries):
                z = min(a + basket_entries, len(counts))
                lo, hi = starts[a], starts[z]
                part = ak.zip({name[5:]: ak.unflatten(b[name][lo:hi], counts[a:z]) for name in jagged})
                block = {"part": part, **{k: b[k][a:z] for k in ("jet_pt", "jet_mass", "label")}}
                if a == 0:
                    f.mktree(tree, {k: v.type.content if k == "part" else v.dtype for k, v in block.items()})
                f[tree].extend(block)
    return len(counts)


def write_jets_parquet(h5_path: str, out_path: str, *, seed: int = 0, row_group_rows: int = 10_000) -> int:
    """Writes the jets of ``h5_path`` as a Parquet table with list columns; returns the rows."""
    import pyarrow as pa  # optional extra [root]
    import pyarrow.parquet as pq  # optional extra [root]

    counts, b = jet_branches(h5_path, seed=seed)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    cols = {name: pa.ListArray.from_arrays(offsets, pa.array(b[name]))
            for name in ("part_pt",) + PARTICLE_BRANCHES}
    cols.update({k: pa.array(b[k]) for k in ("jet_pt", "jet_mass", "label")})
    with atomic_path(out_path, suffix=".parquet") as tmp:
        pq.write_table(pa.table(cols), tmp, row_group_size=row_group_rows)
    return len(counts)
