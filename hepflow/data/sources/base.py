"""What every non-HDF5 source does: inspect files once, read row ranges per thread."""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from hepflow.data.samples import SampleSpec
from hepflow.data.selection import evaluate_selection, selection_names
from hepflow.errors import DataError

__all__ = ["FileSource", "inspect_source", "source_for"]

log = logging.getLogger(__name__)

_SCAN_ROWS = 16_384  # rows per read while scanning a file for non-finite values


class FileSource:
    """Reads the rows of one sample's files in one format.

    Subclasses implement :meth:`open`, :meth:`describe`, :meth:`read` and :meth:`column`.
    Handles returned by :meth:`open` belong to one thread and have a ``close()`` method.

    Args:
        spec: The sample.
    """

    format = ""
    preferred_block_rows: int | None = None  # rows decoded together (a ROOT cluster, a Parquet row group)

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec

    def open(self, path: str) -> Any:
        """Opens a file for reading in the calling thread."""
        raise NotImplementedError

    def describe(self, handle: Any, path: str) -> tuple[int, dict[str, tuple[tuple[int, ...], np.dtype]]]:
        """Validates a file against the spec: its number of rows and, per feature, row shape and dtype."""
        raise NotImplementedError

    def read(self, handle: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of every feature, with the shapes and dtypes of :meth:`describe`."""
        raise NotImplementedError

    def column(self, handle: Any, path: str, name: str, n_rows: int) -> np.ndarray:
        """A per-row scalar (a feature or a branch/column of the file) for selections."""
        raise NotImplementedError

    def feature_path(self, name: str) -> str:
        """How the feature is found in the files (for messages and ``hepflow inspect``)."""
        key = self.spec.keys.get(name)
        if key is None and name.endswith("_mask"):
            return f"mask of {self.feature_path(name[:-5])}"
        return "+".join(key) if isinstance(key, tuple) else str(key)


def source_for(spec: SampleSpec) -> FileSource:
    """The source that reads ``spec``'s format (imports its optional extra on first use)."""
    if spec.format == "root":
        from hepflow.data.sources.root import RootSource  # optional extra [root]: uproot, awkward
        return RootSource(spec)
    if spec.format == "parquet":
        from hepflow.data.sources.parquet import ParquetSource  # optional extra [root]: pyarrow, awkward
        return ParquetSource(spec)
    if spec.format == "top_tagging":
        from hepflow.data.sources.published import TopTaggingSource  # circular: published imports FileSource from here
        return TopTaggingSource(spec)
    if spec.format == "tfds":
        from hepflow.data.sources.tfds_source import TfdsSource  # optional extra [tfds]
        return TfdsSource(spec)
    raise DataError(f"Sample '{spec.name}': no source reads format {spec.format!r}. Received: format={spec.format!r}")


def inspect_source(spec: SampleSpec, index: int, *, on_nonfinite: str = "error"):
    """Opens every file of a non-HDF5 sample once, validates it and applies its selection.

    Returns:
        A :class:`~hepflow.data.readers.SampleLayout` whose ``source`` reads the rows.

    Raises:
        DataError: missing or unreadable files, missing trees/branches/columns, inconsistent
            features across files, an empty sample, or a selection that cannot be evaluated.
    """
    from hepflow.data.readers import FeatureInfo, FileInfo, SampleLayout  # circular: readers imports this module

    source = source_for(spec)
    paths = spec.resolve_files()
    features: dict[str, FeatureInfo] = {}
    files, rows, counts, dropped = [], [], [], 0
    names = selection_names(spec.selection) if spec.selection else set()
    for path in paths:
        st = os.stat(path)
        handle = source.open(path)
        try:
            n_rows, feats = source.describe(handle, path)
            for name, (shape, dtype) in feats.items():
                info = FeatureInfo(source.feature_path(name), tuple(shape), np.dtype(dtype))
                prev = features.setdefault(name, info)
                if (prev.row_shape, prev.dtype) != (info.row_shape, info.dtype):
                    raise DataError(
                        f"Sample '{spec.name}': feature '{name}' ({info.path}) in {path} has rows of shape "
                        f"{info.row_shape} and dtype {info.dtype}; expected {prev.row_shape} {prev.dtype} as in "
                        f"the sample's first file. Received: shape={info.row_shape}, dtype={info.dtype}")
            mask = None
            if names:
                cols = {n: source.column(handle, path, n, n_rows) for n in names}
                mask = evaluate_selection(spec.selection, cols)
            if on_nonfinite == "drop":
                finite = _finite_rows(source, handle, n_rows)
                dropped += int((~finite if mask is None else (mask & ~finite)).sum())
                mask = finite if mask is None else (mask & finite)
        finally:
            handle.close()
        sel = None if mask is None or mask.all() else np.flatnonzero(mask).astype(np.int64)
        files.append(FileInfo(path, int(n_rows), st.st_size, st.st_mtime_ns, {}, (), st.st_ctime_ns))
        rows.append(sel)
        counts.append(n_rows if sel is None else len(sel))
    counts_a = np.asarray(counts, np.int64)
    layout = SampleLayout(
        spec=spec, index=index, files=files, features=features, rows=rows, counts=counts_a,
        offsets=np.concatenate([[0], np.cumsum(counts_a)[:-1]]).astype(np.int64),
        n_dropped_nonfinite=dropped, source=source)
    if dropped:
        log.warning("Sample '%s': dropped %d rows with NaN/Inf values (on_nonfinite='drop').", spec.name, dropped)
    if layout.n_rows == 0:
        why = " after its selection" if spec.selection else ""
        raise DataError(f"Sample '{spec.name}' is empty{why}: expected at least one row. "
                        f"Received: files={paths!r}, rows per file={counts}")
    return layout


def _finite_rows(source: FileSource, handle: Any, n_rows: int) -> np.ndarray:
    ok = np.ones(n_rows, bool)
    for start in range(0, n_rows, _SCAN_ROWS):
        stop = min(start + _SCAN_ROWS, n_rows)
        for block in source.read(handle, start, stop).values():
            if block.dtype.kind == "f":
                ok[start:stop] &= np.isfinite(block.reshape(stop - start, -1)).all(axis=1)
    return ok
