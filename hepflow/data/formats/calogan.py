"""The CaloGAN calorimeter-shower format (Paganini, de Oliveira, Nachman, arXiv:1705.02355).

One HDF5 file per particle (``eplus.hdf5``, ``gamma.hdf5``, ``piplus.hdf5``), plain h5py
datasets at the root:

* ``layer_0`` (N, 3, 96), ``layer_1`` (N, 12, 12), ``layer_2`` (N, 12, 6): energy per cell;
* ``energy`` (N, 1): the incident energy (GeV);
* ``overflow`` (N, 3): energy deposited outside each layer's grid.

They are contiguous datasets, so hepflow's pipeline reads them directly with a ``SampleSpec``
(``keys=["layer_0", "layer_1", "layer_2", "energy"]``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import h5py
import numpy as np

from hepflow.errors import DataError
from hepflow.io import atomic_path

__all__ = ["CALOGAN_LAYERS", "CALOGAN_SHAPES", "read_calogan", "write_calogan"]

#: The CaloGAN calorimeter's cell grid, (rows, columns) per layer: the one place hepflow states it
#: (simulation, models, tfds features and generator exports read it from here).
CALOGAN_LAYERS = {"layer_0": (3, 96), "layer_1": (12, 12), "layer_2": (12, 6)}
#: Per-row shapes of the published datasets.
CALOGAN_SHAPES = {**CALOGAN_LAYERS, "energy": (1,), "overflow": (3,)}


def _check(arrays: Mapping[str, np.ndarray], where: str) -> int:
    missing = [k for k in CALOGAN_SHAPES if k not in arrays]
    if missing:
        raise DataError(f"{where}: CaloGAN datasets {missing} are missing. Received: {sorted(arrays)}")
    n = len(arrays["energy"])
    for key, shape in CALOGAN_SHAPES.items():
        got = tuple(arrays[key].shape)
        if got != (n, *shape):
            raise DataError(f"{where}: dataset '{key}' must have shape (N, {', '.join(map(str, shape))}) with "
                            f"N = {n}. Received: {got}")
    return n


def read_calogan(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Reads rows ``[start, stop)`` of a CaloGAN file into float32 arrays.

    Raises:
        DataError: a missing file or dataset, or a dataset of the wrong shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"CaloGAN file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][start:stop].astype(np.float32) for k in CALOGAN_SHAPES if k in f}
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e}).") from None
    _check(arrays, path)
    return arrays


def write_calogan(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes the CaloGAN layout (float32, contiguous) atomically: a temporary file, then a rename."""
    path = os.fspath(path)
    _check(arrays, path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key in CALOGAN_SHAPES:
            f.create_dataset(key, data=np.asarray(arrays[key], np.float32))
