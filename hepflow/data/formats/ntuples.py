"""hepflow's jet files rewritten as the ntuples users bring: ROOT TTrees and Parquet tables.

Each jet becomes one entry with per-particle (jagged) branches ``part_E``, ``part_px``,
``part_py``, ``part_pz``, ``part_pt`` holding only its real constituents, in a shuffled order
per jet (as a detector's particle list comes, so that ``sort_by: part_pt`` has work to do),
and flat branches ``jet_pt``, ``jet_mass`` and ``label``. ``hepflow generate jet-ntuples`` writes
a folder of generated jets this way (and in the published top-tagging layout); the tests and
``tools/bench_pipeline.py --format root,parquet`` use it too. Needs the ``[root]`` extra.
"""
from __future__ import annotations

import glob
import os

import h5py
import numpy as np

from hepflow.data.formats.top_tagging import write_reference
from hepflow.io import atomic_path

__all__ = ["jet_branches", "write_jets_root", "write_jets_parquet", "write_jet_folder", "PARTICLE_BRANCHES",
           "NTUPLE_FORMATS"]

NTUPLE_FORMATS = ("root", "parquet", "published")

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


def write_jet_folder(src_dir: str, out_dir: str, *, fmt: str, seed: int = 0) -> list[str]:
    """Rewrites every ``qcd_*.h5``/``top_*.h5`` of a generated folder as ROOT, Parquet or published files.

    ``root`` and ``parquet`` keep one output per input (``qcd_00000.root``, ...); ``published``
    merges the i-th QCD and top files into ``jets_<i>.h5`` (both classes, ``is_signal_new``), in
    pandas' table layout as the published files. Existing outputs are kept (a rerun resumes).

    Returns:
        The paths of the outputs.
    """
    if fmt not in NTUPLE_FORMATS:
        raise ValueError(f"fmt must be one of {NTUPLE_FORMATS}. Received: fmt={fmt!r}")
    qcd = sorted(glob.glob(os.path.join(src_dir, "qcd_*.h5")))
    top = sorted(glob.glob(os.path.join(src_dir, "top_*.h5")))
    if not qcd or len(qcd) != len(top):
        raise ValueError(f"{src_dir}: expected as many qcd_*.h5 as top_*.h5 files (hepflow generate top-tagging). "
                         f"Received: {len(qcd)} qcd, {len(top)} top")
    os.makedirs(out_dir, exist_ok=True)
    out = []
    if fmt == "published":
        for i, pair in enumerate(zip(qcd, top)):
            path = os.path.join(out_dir, f"jets_{i:05d}.h5")
            if not os.path.exists(path):
                arrays: dict[str, list[np.ndarray]] = {"constituents": [], "truth_top": [], "label": []}
                for src in pair:
                    with h5py.File(src, "r") as f:
                        for k in arrays:
                            arrays[k].append(f[k][...])
                write_reference(path, {k: np.concatenate(v) for k, v in arrays.items()}, layout="table")
            out.append(path)
        return out
    write = write_jets_root if fmt == "root" else write_jets_parquet
    for k, src in enumerate(qcd + top):
        path = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + f".{fmt}")
        if not os.path.exists(path):
            write(src, path, seed=seed * 100_003 + k)
        out.append(path)
    return out
