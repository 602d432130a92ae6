"""The top-tagging reference dataset format (Kasieczka, Plehn et al., SciPost Phys. 7, 014 (2019)).

Published as pandas HDF5 files (``train.h5``, ``val.h5``, ``test.h5``) with key ``table``:
columns ``E_i, PX_i, PY_i, PZ_i`` for constituents i = 0 … 199 (GeV, pT-ordered, zero-padded),
``truthE, truthPX, truthPY, truthPZ`` (the top four-vector, zero for QCD), ``ttv`` (the
original train/test/validation flag) and ``is_signal_new`` (1 for top, 0 for QCD). Both of
pandas' storage layouts (``fixed`` and ``table``) occur in the wild; reading goes through
pandas and PyTables (the ``[formats]`` extra), which handle both.
"""
from __future__ import annotations

import os

import numpy as np

from hepflow.io import atomic_path

__all__ = ["reference_columns", "read_reference", "write_reference", "N_CONSTITUENTS"]

N_CONSTITUENTS = 200
KEY = "table"


def reference_columns(n_constituents: int = N_CONSTITUENTS) -> list[str]:
    """The published column order."""
    cols = [f"{c}_{i}" for i in range(n_constituents) for c in ("E", "PX", "PY", "PZ")]
    return cols + ["truthE", "truthPX", "truthPY", "truthPZ", "ttv", "is_signal_new"]


def _pandas():
    try:
        import pandas as pd  # optional extra [formats]
        import tables  # noqa: F401 -- optional extra [formats]: pandas' HDF5 backend
    except ImportError as e:
        raise ImportError(
            "Reading the top-tagging reference files needs pandas and PyTables: "
            f"pip install -e '.[formats]'. Missing: {e.name}"
        ) from None
    return pd


def read_reference(path: str | os.PathLike, *, start: int | None = None, stop: int | None = None
                   ) -> dict[str, np.ndarray]:
    """Reads rows ``[start, stop)`` of a reference file.

    Returns:
        ``constituents`` (n, 200, 4) float32 as (E, px, py, pz); ``truth_top`` (n, 4)
        float32; ``ttv`` (n,) int8; ``label`` (n,) int8 (``is_signal_new``).

    Raises:
        ValueError: the file is not in the reference layout (names the missing columns).
    """
    pd = _pandas()
    path = os.fspath(path)
    try:
        df = pd.read_hdf(path, key=KEY, start=start, stop=stop)
    except (KeyError, OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path}: cannot read key '{KEY}' as a pandas table; expected a top-tagging reference "
            f"file. Received: {type(e).__name__}: {e}"
        ) from None
    missing = [c for c in reference_columns() if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: key '{KEY}' lacks {len(missing)} reference columns (e.g. {missing[:4]}); expected "
            f"E_i, PX_i, PY_i, PZ_i for i < 200, truth*, ttv, is_signal_new. "
            f"Received: columns {list(df.columns[:6])}…"
        )
    const = df[reference_columns()[:4 * N_CONSTITUENTS]].to_numpy(np.float32).reshape(-1, N_CONSTITUENTS, 4)
    return {
        "constituents": const,
        "truth_top": df[["truthE", "truthPX", "truthPY", "truthPZ"]].to_numpy(np.float32),
        "ttv": df["ttv"].to_numpy().astype(np.int8),
        "label": df["is_signal_new"].to_numpy().astype(np.int8),
    }


def write_reference(path: str | os.PathLike, arrays: dict[str, np.ndarray], *, layout: str = "fixed") -> None:
    """Writes jets in the reference layout with pandas (atomically: temporary file + rename).

    Args:
        path: Output ``.h5`` file.
        arrays: ``constituents`` (n, 200, 4), ``label`` (n,), optional ``truth_top`` (n, 4)
            and ``ttv`` (n,) (default 0).
        layout: pandas' ``"fixed"`` or ``"table"`` format.
    """
    pd = _pandas()
    if layout not in ("fixed", "table"):
        raise ValueError(f"layout must be 'fixed' or 'table'. Received: layout={layout!r}")
    const = np.asarray(arrays["constituents"], np.float32)
    n = len(const)
    data = np.concatenate([
        const.reshape(n, -1).astype(np.float64),
        np.asarray(arrays.get("truth_top", np.zeros((n, 4))), np.float64),
        np.asarray(arrays.get("ttv", np.zeros(n)), np.float64)[:, None],
        np.asarray(arrays["label"], np.float64)[:, None],
    ], axis=1)
    df = pd.DataFrame(data, columns=reference_columns())
    with atomic_path(path) as tmp:
        df.to_hdf(tmp, key=KEY, format=layout, mode="w")
