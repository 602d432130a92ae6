"""Features made of branches (ROOT) or columns (Parquet): flat, fixed-size or jagged.

A feature names one branch or a list of branches stacked on a new last axis. Jagged branches
(a list per event) are cut to ``pad`` entries and zero-padded, after an optional per-event sort
by ``sort_by`` (decreasing), and come with a ``<feature>_mask`` bool feature. All branches of a
jagged feature must have the same length per event (as particle branches sharing one counter do).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hepflow.data.samples import SampleSpec
from hepflow.data.sources.base import FileSource
from hepflow.errors import DataError

__all__ = ["Branch", "BranchSource", "Jagged", "awkward"]


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

    # -- subclass interface ---------------------------------------------------
    def branches(self, handle: Any, path: str) -> tuple[dict[str, Branch], dict[str, str]]:
        """Readable branches (name → Branch) and the others (name → type, for messages)."""
        raise NotImplementedError

    def arrays(self, handle: Any, names: list[str], start: int, stop: int) -> dict[str, Any]:
        """Entries ``[start, stop)`` of branches: numpy arrays (flat) or :class:`Jagged` (jagged)."""
        raise NotImplementedError

    def n_entries(self, handle: Any) -> int:
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
        return self.n_entries(handle), feats

    def read(self, handle: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        spec = self.spec
        raw = self.arrays(handle, self._needed, start, stop)
        n = stop - start
        order = None
        if spec.sort_by:
            key = raw[spec.sort_by]
            event = np.repeat(np.arange(n), np.diff(key.offsets))
            order = np.lexsort((-key.values, event))  # by event, then decreasing sort key; stable
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
            # where each kept entry goes: (event, position in the event's possibly sorted list)
            pos = np.arange(len(first.values)) - np.repeat(first.offsets[:-1], counts)
            keep = pos < pad
            event = np.repeat(np.arange(n), counts)[keep]
            slot = pos[keep]
            dtype = np.result_type(*[raw[b].values.dtype for b in names])
            shape = (n, pad) + ((len(names),) if isinstance(key, tuple) else ())
            arr = np.zeros(shape, dtype)
            for j, b in enumerate(names):
                values = raw[b].values if order is None else raw[b].values[order]
                if isinstance(key, tuple):
                    arr[event, slot, j] = values[keep]
                else:
                    arr[event, slot] = values[keep]
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

