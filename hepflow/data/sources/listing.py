"""What a data file holds, as lines of text (``hepflow inspect FILE``)."""
from __future__ import annotations

import os

import h5py

from hepflow.data.sources.published import is_top_tagging_file
from hepflow.errors import DataError

__all__ = ["describe_file"]


def describe_file(path: str) -> list[str]:
    """Trees and branches (ROOT), columns (Parquet), datasets or the published layout (HDF5).

    Raises:
        DataError: the file is missing or not readable in the format its name says.
    """
    if not os.path.isfile(path):
        raise DataError(f"hepflow inspect: file not found: {path}. Received: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".root":
        return _root(path)
    if ext in (".parquet", ".pq"):
        return _parquet(path)
    return _hdf5(path)


def _root(path: str) -> list[str]:
    from hepflow.data.sources.root import list_trees, uproot_module  # optional extra [root]

    uproot = uproot_module()
    try:
        f = uproot.open(path)
    except Exception as e:  # uproot's errors on a damaged file
        raise DataError(f"{path}: cannot open as a ROOT file. Received: {type(e).__name__}: {e}") from None
    lines = [f"{path}: ROOT file, {len(list_trees(f))} TTree(s)"]
    with f:
        for name in list_trees(f):
            tree = f[name]
            lines.append(f"  tree {name}: {tree.num_entries:,} entries, {len(tree.keys(recursive=True))} branches")
            for bname, branch in tree.iteritems(recursive=True):
                try:
                    interp = str(branch.interpretation)
                except Exception:  # an unknown streamer
                    interp = "not readable"
                lines.append(f"    {bname:28s} {branch.typename:20s} {interp}")
    return lines


def _parquet(path: str) -> list[str]:
    from hepflow.data.sources.parquet import pyarrow_parquet  # optional extra [root]

    try:
        pf = pyarrow_parquet().ParquetFile(path)
    except Exception as e:  # pyarrow's errors on a damaged file
        raise DataError(f"{path}: cannot open as a Parquet file. Received: {type(e).__name__}: {e}") from None
    md = pf.metadata
    lines = [f"{path}: Parquet file, {md.num_rows:,} rows in {md.num_row_groups} row group(s)"]
    lines += [f"    {field.name:28s} {field.type}" for field in pf.schema_arrow]
    pf.close()
    return lines


def _hdf5(path: str) -> list[str]:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: cannot open as HDF5. Received: {e}") from None
    with f:
        if is_top_tagging_file(path):
            g = f["table"]
            kind = g.attrs["pandas_type"]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            n = g["axis1"].shape[0] if "axis1" in g else g["table"].shape[0]
            return [f"{path}: published top-tagging layout (pandas {'fixed' if kind == 'frame' else 'table'}), "
                    f"{n:,} jets; read with format: top_tagging, features constituents (200, 4), truth_top (4,), "
                    "is_signal_new, ttv or any column"]
        lines = [f"{path}: HDF5 file"]
        f.visititems(lambda name, obj: lines.append(f"    {name:28s} {str(obj.shape):18s} {obj.dtype}")
                     if isinstance(obj, h5py.Dataset) else None)
        return lines
