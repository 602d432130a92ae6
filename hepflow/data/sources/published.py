"""The published top-tagging files (pandas HDF5 tables, key ``table``) as a sample source.

Both of pandas' layouts are read with h5py, a row range at a time: ``fixed`` (blocks
``table/block<i>_values``, column names in ``table/block<i>_items``) and ``table`` (one compound
dataset ``table/table`` with fields ``values_block_<i>``; the column names come from pandas'
metadata, read once per file with pandas, the ``[formats]`` extra). Features:

* ``constituents``: (200, 4) float32, (E, px, py, pz) of the 200 constituents (GeV, zero-padded);
* ``truth_top``: (4,) float32, the top's (E, px, py, pz), zero for QCD;
* ``is_signal_new`` (1 top, 0 QCD) and ``ttv``: int8;
* any other column by its name, as one number per row.

The class of each row is ``is_signal_new``: two samples with selections
``is_signal_new == 1`` and ``is_signal_new == 0`` make a top-vs-QCD dataset.
"""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np

from hepflow.data.formats.top_tagging import KEY, N_CONSTITUENTS
from hepflow.data.samples import SampleSpec
from hepflow.data.sources.base import FileSource
from hepflow.errors import DataError

__all__ = ["TopTaggingSource", "is_top_tagging_file", "COMPOSITE_FEATURES"]

COMPOSITE_FEATURES = {
    "constituents": ([f"{c}_{i}" for i in range(N_CONSTITUENTS) for c in ("E", "PX", "PY", "PZ")],
                     (N_CONSTITUENTS, 4), np.float32),
    "truth_top": (["truthE", "truthPX", "truthPY", "truthPZ"], (4,), np.float32),
    "is_signal_new": (["is_signal_new"], (), np.int8),
    "ttv": (["ttv"], (), np.int8),
}


def is_top_tagging_file(path: str) -> bool:
    """Whether an HDF5 file has the published layout (a pandas frame under ``table``)."""
    try:
        with h5py.File(path, "r") as f:
            g = f.get(KEY)
            return isinstance(g, h5py.Group) and "pandas_type" in g.attrs
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class _Block:
    dataset: str
    field: str | None
    columns: tuple[str, ...]


class _Handle:
    def __init__(self, f: h5py.File) -> None:
        self.file = f

    def close(self) -> None:
        self.file.close()


class TopTaggingSource(FileSource):
    """Reads files in the published top-tagging layout (fixed or table)."""

    format = "top_tagging"

    def __init__(self, spec: SampleSpec) -> None:
        super().__init__(spec)
        self._plans: dict[str, dict[str, tuple[int, np.ndarray]]] = {}  # path → feature → (block, column index)
        self._blocks: dict[str, list[_Block]] = {}

    def open(self, path: str) -> _Handle:
        try:
            return _Handle(h5py.File(path, "r"))
        except FileNotFoundError:
            raise DataError(f"Sample '{self.spec.name}': file not found: {path}. Received: a missing path") from None
        except OSError as e:
            raise DataError(f"Sample '{self.spec.name}': cannot open {path} as HDF5; expected a top-tagging file "
                            f"(pandas HDF5, key 'table'). Received: {e}") from None

    def _layout(self, f: h5py.File, path: str) -> tuple[int, list[_Block]]:
        g = f.get(KEY)
        if not isinstance(g, h5py.Group) or "pandas_type" not in g.attrs:
            top = sorted(f.keys())
            raise DataError(f"Sample '{self.spec.name}': {path} is not in the published top-tagging layout: expected "
                            f"a pandas frame under key '{KEY}'. Received: top-level keys {top[:20]}")
        kind = g.attrs["pandas_type"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "frame":  # fixed
            n = int(g["axis1"].shape[0])
            blocks = [_Block(f"{KEY}/block{i}_values", None,
                             tuple(x.decode() if isinstance(x, bytes) else str(x) for x in g[f"block{i}_items"][...]))
                      for i in range(int(g.attrs["nblocks"]))]
            return n, blocks
        if kind == "frame_table":
            try:
                import pandas as pd  # optional extra [formats]: the column names of the table layout
            except ImportError:
                raise ImportError("Reading the table layout of the top-tagging files needs pandas: "
                                  "pip install -e '.[formats]'. Missing: pandas") from None
            with pd.HDFStore(path, "r") as store:
                axes = store.get_storer(KEY).values_axes
                blocks = [_Block(f"{KEY}/table", a.cname, tuple(str(c) for c in a.values)) for a in axes]
            return int(g["table"].shape[0]), blocks
        raise DataError(f"Sample '{self.spec.name}': {path} holds a pandas '{kind}' under '{KEY}'; expected a "
                        "DataFrame (fixed or table layout). Received: pandas_type=" + repr(kind))

    def describe(self, handle: _Handle, path: str):
        n, blocks = self._layout(handle.file, path)
        where = {c: (b, j) for b, block in enumerate(blocks) for j, c in enumerate(block.columns)}
        plans, feats = {}, {}
        for name, key in self.spec.keys.items():
            cols, shape, dtype = COMPOSITE_FEATURES.get(key, ([key], (), None))
            missing = [c for c in cols if c not in where]
            if missing:
                raise DataError(
                    f"Sample '{self.spec.name}': feature '{name}' needs columns {missing[:4]}{'…' if len(missing) > 4 else ''} "
                    f"that {path} lacks; expected one of {sorted(COMPOSITE_FEATURES)} or a column name "
                    f"(e.g. {list(where)[:3]}, truthE, ttv). Received: {name}={key!r}")
            bs = {where[c][0] for c in cols}
            if len(bs) > 1:
                raise DataError(f"Sample '{self.spec.name}': the columns of feature '{name}' are stored in "
                                f"{len(bs)} blocks of {path}; expected one. Received: {name}={key!r}")
            b = bs.pop()
            if dtype is None:
                d = handle.file[blocks[b].dataset]
                dtype = (d.dtype[blocks[b].field].base if blocks[b].field else d.dtype).newbyteorder("=")
            plans[name] = (b, np.array([where[c][1] for c in cols], np.int64), shape, np.dtype(dtype))
            feats[name] = (shape, np.dtype(dtype))
        self._plans[path], self._blocks[path] = plans, blocks
        return n, feats

    def read(self, handle: _Handle, start: int, stop: int) -> dict[str, np.ndarray]:
        path = handle.file.filename
        plans, blocks = self._plans[path], self._blocks[path]
        values: dict[int, np.ndarray] = {}
        out = {}
        for name, (b, cols, shape, dtype) in plans.items():
            if b not in values:
                d = handle.file[blocks[b].dataset]
                values[b] = (d.fields(blocks[b].field)[start:stop] if blocks[b].field else d[start:stop])
            out[name] = values[b][:, cols].astype(dtype).reshape((stop - start,) + shape)
        return out

    def column(self, handle: _Handle, path: str, name: str, n_rows: int) -> np.ndarray:
        key = self.spec.keys.get(name, name)
        n, blocks = self._layout(handle.file, path)
        for block in blocks:
            if key in block.columns:
                d = handle.file[block.dataset]
                values = d.fields(block.field)[...] if block.field else d[...]
                return values[:, block.columns.index(key)].reshape(n_rows)
        raise DataError(f"Sample '{self.spec.name}': selection variable '{name}' is neither a key nor a column of "
                        f"{path}; expected e.g. is_signal_new. Received: selection={self.spec.selection!r}")
