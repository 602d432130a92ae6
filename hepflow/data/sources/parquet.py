"""Parquet files through pyarrow (the ``[root]`` extra): numeric, fixed-size-list and list columns."""
from __future__ import annotations

from typing import Any

import numpy as np

from hepflow.data.samples import SampleSpec
from hepflow.data.sources.columnar import Branch, BranchSource, Jagged
from hepflow.errors import DataError

__all__ = ["ParquetSource", "pyarrow_parquet"]


def pyarrow_parquet():
    """``pyarrow.parquet``, or an ImportError naming the extra."""
    try:
        import pyarrow.parquet as pq  # optional extra [root]
    except ImportError as e:
        raise ImportError(f"Reading Parquet files needs pyarrow: pip install -e '.[root]'. Missing: {e.name}") from None
    return pq


class _Handle:
    def __init__(self, path: str, file) -> None:
        self.path, self.file = path, file
        md = file.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def close(self) -> None:
        self.file.close()


class ParquetSource(BranchSource):
    """Reads top-level columns; only the row groups a range touches are decoded."""

    format = "parquet"
    what = "column"

    def __init__(self, spec: SampleSpec) -> None:
        super().__init__(spec)
        self.pq = pyarrow_parquet()
        import pyarrow as pa  # optional extra [root], with pyarrow.parquet above
        self.pa = pa

    def open(self, path: str) -> _Handle:
        try:
            return _Handle(path, self.pq.ParquetFile(path, memory_map=True))
        except FileNotFoundError:
            raise DataError(f"Sample '{self.spec.name}': file not found: {path}. Received: a missing path") from None
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError... on a bad file
            raise DataError(f"Sample '{self.spec.name}': cannot open {path} as a Parquet file; expected a complete "
                            f"Parquet file. Received: {type(e).__name__}: {e}") from None

    def n_entries(self, handle: _Handle) -> int:
        return int(handle.file.metadata.num_rows)

    def cluster_edges(self, handle: _Handle) -> np.ndarray:
        return handle.group_starts

    def branches(self, handle: _Handle, path: str) -> tuple[dict[str, Branch], dict[str, str]]:
        pa = self.pa
        readable, other = {}, {}
        for field in handle.file.schema_arrow:
            t, jagged, shape = field.type, False, ()
            if pa.types.is_list(t) or pa.types.is_large_list(t):
                jagged, t = True, t.value_type
            while pa.types.is_fixed_size_list(t):
                shape, t = shape + (t.list_size,), t.value_type
            if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)) and not (jagged and shape):
                readable[field.name] = Branch(jagged, shape, np.dtype(t.to_pandas_dtype()))
            else:
                other[field.name] = str(field.type)
        return readable, other

    def arrays(self, handle: _Handle, names: list[str], start: int, stop: int) -> dict[str, Any]:
        starts = handle.group_starts
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, stop, side="left"))
        table = handle.file.read_row_groups(list(range(first, last)), columns=names, use_threads=False)
        table = table.slice(start - int(starts[first]), stop - start)
        out = {}
        for name in names:
            col = table.column(name).combine_chunks()
            if col.null_count:
                raise DataError(f"Sample '{self.spec.name}': column '{name}' holds {col.null_count} nulls in rows "
                                f"{start}:{stop}; expected a value (or a list, maybe empty) in every row. "
                                "Received: null entries")
            t = col.type
            if self.pa.types.is_list(t) or self.pa.types.is_large_list(t):
                offsets = np.asarray(col.offsets, np.int64)
                values = col.flatten()
                if values.null_count:
                    raise DataError(f"Sample '{self.spec.name}': column '{name}' holds nulls inside its lists in rows "
                                    f"{start}:{stop}; expected numbers. Received: null entries")
                out[name] = Jagged(offsets - offsets[0], values.to_numpy(zero_copy_only=False))
            elif self.pa.types.is_fixed_size_list(t):
                shape, values = [], col
                while self.pa.types.is_fixed_size_list(values.type):
                    shape.append(values.type.list_size)
                    values = values.flatten()
                out[name] = values.to_numpy(zero_copy_only=False).reshape([len(col)] + shape)
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        return out
