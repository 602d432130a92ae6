"""Features made of branches (ROOT) or columns (Parquet): flat, fixed-size or jagged.

A feature names one branch or a list of branches stacked on a new last axis. Jagged branches
(a list per event) are cut to ``pad`` entries and zero-padded, after an optional per-event sort
by ``sort_by`` (decreasing), and come with a ``<feature>_mask`` bool feature. All branches of a
jagged feature must have the same length per event (as particle branches sharing one counter do).
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from hepflow.data.samples import SampleSpec
from hepflow.data.sources.base import FileSource
from hepflow.errors import DataError

__all__ = ["Branch", "BranchSource", "Jagged", "awkward"]

_CLUSTER_CACHE_BYTES = 256 << 20  # decoded clusters kept per sample, shared by the reader threads


def awkward():
    """The awkward module, or an ImportError naming the extra."""
    try:
        import awkward as ak  # optional extra [root]
    except ImportError as e:
        raise ImportError(f"Reading ROOT and Parquet samples needs awkward: pip install -e '.[root]'. "
                          f"Missing: {e.name}") from None
    return ak


@dataclasses.dataclass(frozen=True)
class Branch:
    """One branch/column: ``jagged`` (a list per event) or not, per-entry shape and dtype."""

    jagged: bool
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class Jagged:
    """A jagged branch's entries: ``offsets`` (n + 1, from 0) into flat ``values`` (native byte order)."""

    offsets: np.ndarray
    values: np.ndarray

    @classmethod
    def of_awkward(cls, ak, array) -> "Jagged":
        """From a one-level jagged awkward array (list offsets, list or regular layouts)."""
        layout = ak.to_layout(array)
        if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
            offsets = np.asarray(layout.offsets, np.int64)
            values = np.asarray(layout.content.data)[offsets[0]:offsets[-1]]
            offsets = offsets - offsets[0]
        else:
            counts = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            values = ak.to_numpy(ak.flatten(array, axis=1))
        return cls(offsets, values.astype(values.dtype.newbyteorder("="), copy=False))

    def rows(self, a: int, b: int) -> "Jagged":
        """Entries ``[a, b)``."""
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        return Jagged(self.offsets[a:b + 1] - lo, self.values[lo:hi])

    @staticmethod
    def concat(parts: list["Jagged"]) -> "Jagged":
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return Jagged(offsets, np.concatenate([p.values for p in parts]))

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.values.nbytes


def _sorted_entries(key: Jagged, n: int) -> np.ndarray:
    """(n, longest list) flat indices of each event's entries in decreasing ``key`` (stable; -1 past the end)."""
    counts = np.diff(key.offsets)
    width = int(counts.max()) if n else 0
    pos = np.arange(len(key.values)) - np.repeat(key.offsets[:-1], counts)
    event = np.repeat(np.arange(n), counts)
    dense = np.full((n, max(width, 1)), np.inf)
    dense[event, pos] = -key.values.astype(np.float64)  # ascending sort of -key: decreasing key, padding last
    rank = np.argsort(dense, axis=1, kind="stable")
    return rank + key.offsets[:-1, None]


class _ClusterCache:
    """Decoded clusters (ROOT basket clusters, Parquet row groups) by ``(path, index)``, least recently used
    dropped beyond a byte budget. Blocks of rows are smaller than clusters, so without it every block would
    decompress its whole cluster again."""

    def __init__(self, budget: int) -> None:
        self.budget, self.size = budget, 0
        self._items: OrderedDict[tuple[str, int], tuple[dict, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> dict | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
        return None

    def put(self, key: tuple[str, int], arrays: dict) -> None:
        size = sum(a.nbytes for a in arrays.values())
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (arrays, size)
            self.size += size
            while self.size > self.budget and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self.size -= dropped


class BranchSource(FileSource):
    """ROOT and Parquet: subclasses list a file's branches and read some of them.

    Subclasses implement :meth:`open`, :meth:`branches` (name → :class:`Branch`, only the
    numeric ones the source can read; ``unreadable`` lists the others) and :meth:`arrays`.
    """

    what = "branch"

    def __init__(self, spec: SampleSpec) -> None:
        super().__init__(spec)
        self.ak = awkward()  # uproot hands jagged branches over as awkward arrays
        self._needed = sorted({b for key in spec.keys.values() for b in (key if isinstance(key, tuple) else (key,))}
                              | ({spec.sort_by} if spec.sort_by else set()))
        self._jagged: dict[str, bool] = {}
        self._edges: dict[str, np.ndarray] = {}  # path → first entry of each cluster, and the entry count
        self._clusters = _ClusterCache(_CLUSTER_CACHE_BYTES)

    # -- subclass interface ---------------------------------------------------
    def branches(self, handle: Any, path: str) -> tuple[dict[str, Branch], dict[str, str]]:
        """Readable branches (name → Branch) and the others (name → type, for messages)."""
        raise NotImplementedError

    def arrays(self, handle: Any, names: list[str], start: int, stop: int) -> dict[str, Any]:
        """Entries ``[start, stop)`` of branches: numpy arrays (flat) or :class:`Jagged` (jagged)."""
        raise NotImplementedError

    def n_entries(self, handle: Any) -> int:
        raise NotImplementedError

    def cluster_edges(self, handle: Any) -> np.ndarray:
        """First entry of every cluster that is decoded as a whole (and the number of entries at the end)."""
        raise NotImplementedError

    def where(self, path: str) -> str:
        """The file (and tree) for messages."""
        return path

    # -- FileSource -------------------------------------------------------------
    def describe(self, handle: Any, path: str):
        spec = self.spec
        readable, other = self.branches(handle, path)
        for b in self._needed:
            if b not in readable:
                if b in other:
                    raise DataError(
                        f"Sample '{spec.name}': {self.what} '{b}' in {self.where(path)} has type {other[b]}; expected "
                        f"numbers, fixed-size arrays or one list of numbers per event. Received: {b}: {other[b]}")
                raise DataError(
                    f"Sample '{spec.name}': {self.what} '{b}' does not exist in {self.where(path)}; available: "
                    f"{sorted(readable)[:40]}. Received: keys={ {k: list(v) if isinstance(v, tuple) else v for k, v in spec.keys.items()} }")
        if spec.sort_by and not readable[spec.sort_by].jagged:
            raise DataError(f"Sample '{spec.name}': sort_by '{spec.sort_by}' in {self.where(path)} is not a jagged "
                            f"{self.what} (one list per event). Received: sort_by={spec.sort_by!r}")
        feats: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, key in spec.keys.items():
            names = key if isinstance(key, tuple) else (key,)
            infos = [readable[b] for b in names]
            jagged = {i.jagged for i in infos}
            if len(jagged) > 1:
                raise DataError(f"Sample '{spec.name}': feature '{name}' stacks jagged and flat {self.what}es "
                                f"in {self.where(path)}; stack {self.what}es of one kind. Received: {name}={list(names)}")
            if len({i.shape for i in infos}) > 1 or (isinstance(key, tuple) and infos[0].shape != ()):
                raise DataError(f"Sample '{spec.name}': feature '{name}' stacks {self.what}es of shapes "
                                f"{[i.shape for i in infos]}; only scalar entries can be stacked. Received: {name}={list(names)}")
            dtype = np.result_type(*[i.dtype for i in infos])
            shape = infos[0].shape + ((len(names),) if isinstance(key, tuple) else ())
            if infos[0].jagged:
                pad = spec.pad_of(name)
                if pad is None:
                    raise DataError(
                        f"Sample '{spec.name}': feature '{name}' ({'+'.join(names)}) holds a list per event in "
                        f"{self.where(path)}; give `pad` (entries kept per event, e.g. pad: 100 or pad: {{{name}: 100}}) "
                        f"to make it a fixed-size feature. Received: pad={spec.pad!r}")
                feats[name] = ((pad,) + shape, dtype)
                feats[f"{name}_mask"] = ((pad,), np.dtype(bool))
            else:
                feats[name] = (shape, dtype)
            self._jagged[name] = infos[0].jagged
        clash = [f"{n}_mask" for n, j in self._jagged.items() if j and f"{n}_mask" in spec.keys]
        if clash:
            raise DataError(f"Sample '{spec.name}': {clash} is both a key and the mask hepflow adds for a jagged "
                            f"feature; rename the key. Received: keys={sorted(spec.keys)}")
        edges = np.asarray(self.cluster_edges(handle), np.int64)
        self._edges[path] = edges
        sizes = np.diff(edges)
        if len(sizes):
            self.preferred_block_rows = max(self.preferred_block_rows or 0, int(np.median(sizes)))
        return self.n_entries(handle), feats

    def _raw(self, handle: Any, start: int, stop: int) -> dict[str, Any]:
        """Entries ``[start, stop)`` of the needed branches, decoded a whole cluster at a time."""
        edges = self._edges.get(handle.path)
        if edges is None:
            edges = self._edges[handle.path] = np.asarray(self.cluster_edges(handle), np.int64)
        first = int(np.searchsorted(edges, start, side="right")) - 1
        parts = []
        for c in range(first, len(edges) - 1):
            a, b = int(edges[c]), int(edges[c + 1])
            if a >= stop:
                break
            key = (handle.path, c)
            arrays = self._clusters.get(key)
            if arrays is None:
                arrays = self.arrays(handle, self._needed, a, b)
                self._clusters.put(key, arrays)
            lo, hi = max(start, a) - a, min(stop, b) - a
            parts.append({k: (v.rows(lo, hi) if isinstance(v, Jagged) else v[lo:hi]) for k, v in arrays.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: (Jagged.concat([p[k] for p in parts]) if isinstance(parts[0][k], Jagged)
                    else np.concatenate([p[k] for p in parts])) for k in parts[0]}

    def read(self, handle: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        spec = self.spec
        raw = self._raw(handle, start, stop)
        n = stop - start
        order = None
        if spec.sort_by:
            order = _sorted_entries(raw[spec.sort_by], n)
        out: dict[str, np.ndarray] = {}
        for name, key in spec.keys.items():
            names = key if isinstance(key, tuple) else (key,)
            if not self._jagged[name]:
                cols = [np.asarray(raw[b]) for b in names]
                arr = np.stack(cols, axis=-1) if isinstance(key, tuple) else cols[0]
                out[name] = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="), copy=False))
                continue
            pad = spec.pad_of(name)
            first = raw[names[0]]
            for b in names[1:] + ((spec.sort_by,) if spec.sort_by else ()):
                if not np.array_equal(raw[b].offsets, first.offsets):
                    lengths, other = np.diff(first.offsets), np.diff(raw[b].offsets)
                    i = int(np.argmax(other != lengths))
                    raise DataError(
                        f"Sample '{spec.name}': {self.what}es '{names[0]}' and '{b}' have different lengths in entry "
                        f"{start + i} ({lengths[i]} and {other[i]}); a jagged feature and sort_by need lists of equal "
                        f"length per event. Received: {name}={list(names)}, sort_by={spec.sort_by!r}")
            counts = np.diff(first.offsets)
            if order is None:  # the first `pad` entries of each event, in file order
                pos = np.arange(len(first.values)) - np.repeat(first.offsets[:-1], counts)
                keep = pos < pad
                event, slot = np.repeat(np.arange(n), counts)[keep], pos[keep]
                take = np.flatnonzero(keep)
            else:  # the entries of each event in decreasing sort_by, as flat indices
                kept = np.minimum(counts, pad)
                slot = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
                event = np.repeat(np.arange(n), kept)
                take = order[event, slot]
            dtype = np.result_type(*[raw[b].values.dtype for b in names])
            shape = (n, pad) + ((len(names),) if isinstance(key, tuple) else ())
            arr = np.zeros(shape, dtype)
            flat = arr.reshape(-1)
            dest = (event * pad + slot) * len(names)  # one flat index per kept entry: cheaper than 2-D fancy indexing
            for j, b in enumerate(names):
                flat[dest + j] = raw[b].values[take]
            out[name] = arr
            out[f"{name}_mask"] = np.arange(pad)[None, :] < counts[:, None]
        return out

    def column(self, handle: Any, path: str, name: str, n_rows: int) -> np.ndarray:
        """A selection variable: a scalar feature, or any flat scalar branch of the file."""
        key = self.spec.keys.get(name, name)
        if isinstance(key, tuple):
            raise DataError(f"Sample '{self.spec.name}': selection uses '{name}', which stacks several "
                            f"{self.what}es; a selection needs one number per row. Received: selection={self.spec.selection!r}")
        readable, _ = self.branches(handle, path)
        b = readable.get(key)
        if b is None or b.jagged or b.shape not in ((), (1,)):
            why = "does not exist" if b is None else "does not hold one number per row"
            raise DataError(f"Sample '{self.spec.name}': selection variable '{name}' {why} in {self.where(path)}; "
                            f"expected a key or a flat scalar {self.what}. Received: selection={self.spec.selection!r}")
        return np.asarray(self.arrays(handle, [key], 0, n_rows)[key]).reshape(n_rows)

