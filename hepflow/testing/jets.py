"""Jet-like HDF5 files for tests, benchmarks and the demo.

These are not physics (hepflow.physics generates real jets); they have the
shapes, dtypes and rough value ranges of constituent-level jet data so that the
data layer can be exercised and measured: 200 constituents × (E, px, py, pz)
float32, zero-padded, plus jet mass and pT.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from hepflow.io import atomic_path

__all__ = ["write_jet_files"]


def write_jet_files(directory: str | os.PathLike, *, name: str, n_files: int, jets_per_file: int,
                    n_constituents: int = 200, seed: int = 0, signal: bool = False,
                    compression: str | None = None, block: int = 50_000) -> list[str]:
    """Writes ``n_files`` HDF5 files ``{name}_{i}.h5`` with keys ``constituents``, ``mass``, ``pt``.

    Args:
        directory: Output folder (created if missing).
        name: File name prefix.
        n_files: Number of files.
        jets_per_file: Rows per file.
        n_constituents: Constituent slots per jet (zero-padded).
        seed: Seed; file ``i`` uses ``seed * 1000 + i``.
        signal: Shift the mass distribution up (a top-like peak instead of a
            falling QCD-like spectrum) so that classes are separable.
        compression: h5py compression (``None``, ``"lzf"``, ``"gzip"``).
        block: Rows generated at a time (bounds memory).

    Returns:
        The paths written. Each file is written to a temporary name and renamed.
    """
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(n_files):
        rng = np.random.default_rng(seed * 1000 + i)
        path = os.path.join(os.fspath(directory), f"{name}_{i}.h5")
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            kw = {"compression": compression} if compression else {}
            if compression:
                kw["chunks"] = (min(256, jets_per_file), n_constituents, 4)
            c = f.create_dataset("constituents", (jets_per_file, n_constituents, 4), "f4", **kw)
            m = f.create_dataset("mass", (jets_per_file,), "f4")
            pt = f.create_dataset("pt", (jets_per_file,), "f4")
            for a in range(0, jets_per_file, block):
                n = min(block, jets_per_file - a)
                mult = rng.integers(20, 120 if signal else 80, n)
                pts = rng.exponential(10.0, (n, n_constituents)).astype("f4")
                pts.sort(axis=1)
                pts = pts[:, ::-1]
                pts[np.arange(n_constituents)[None, :] >= mult[:, None]] = 0.0
                eta = rng.normal(0, 0.3, (n, n_constituents)).astype("f4")
                phi = rng.normal(0, 0.3, (n, n_constituents)).astype("f4")
                x = np.empty((n, n_constituents, 4), "f4")
                x[..., 1] = pts * np.cos(phi)
                x[..., 2] = pts * np.sin(phi)
                x[..., 3] = pts * np.sinh(eta)
                x[..., 0] = np.sqrt(x[..., 1] ** 2 + x[..., 2] ** 2 + x[..., 3] ** 2)
                c[a:a + n] = x
                m[a:a + n] = (rng.normal(173.0, 15.0, n) if signal else rng.exponential(60.0, n) + 10).astype("f4")
                pt[a:a + n] = rng.uniform(550.0, 650.0, n).astype("f4")
        paths.append(path)
    return paths
