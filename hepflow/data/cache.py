"""The cache after the first epoch: transformed rows, per sample, in canonical order.

Expensive preprocessing runs once: the first time a row is read its transformed
value is written to the cache; once every row of a sample is in, later chunks of
that sample are served from the cache instead of HDF5 + transform.

* ``memory``: numpy arrays in RAM.
* disk: one ``.npy`` file per feature, memory-mapped, under
  ``<cache_dir>/<fingerprint>/<sample>/``. It is written into a temporary folder
  and renamed into place only when every row of the sample has been written, so
  an interrupted first epoch never leaves a cache that a later run would use.
  The fingerprint covers the specs, every file's path, size and mtime, the keys
  and the transform's configuration: a changed input or transform gets a new
  folder.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import psutil

from hepflow.errors import DataError
from hepflow.data.readers import SampleLayout

__all__ = ["CACHE_FORMAT", "DiskFullError", "default_cache_dir", "free_disk_bytes", "row_bytes", "transform_config",
           "fingerprint", "RowCache", "list_caches", "remove_caches"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


class DiskFullError(DataError):
    """A disk cache that does not fit the free space of its file system."""


def default_cache_dir() -> str:
    """``$HEPFLOW_CACHE_DIR``, else ``~/.cache/hepflow/pipeline``."""
    return os.environ.get("HEPFLOW_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "hepflow", "pipeline")


def row_bytes(spec: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    """Bytes of one row of a feature spec (name → (row shape, dtype))."""
    return sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for s, d in spec.values())


def free_disk_bytes(path: str) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def transform_config(transform: Callable | None) -> Any:
    """A JSON-able description of a transform, used in cache fingerprints.

    Objects with ``get_config()`` (Keras style) are described by class and
    config; plain functions by qualified name and source code.
    """
    if transform is None:
        return None
    if hasattr(transform, "get_config"):
        return {"class": f"{type(transform).__module__}.{type(transform).__qualname__}",
                "config": transform.get_config()}
    fn = getattr(transform, "python_function", transform)  # unwrap tf.function
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        src = code.co_code.hex() if code is not None else repr(fn)
    return {"function": f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}",
            "source_sha256": hashlib.sha256(src.encode()).hexdigest()}


def fingerprint(layouts: Sequence[SampleLayout], transform: Callable | None,
                extra: Mapping[str, Any] | None = None) -> str:
    """A hex digest that changes whenever the cached rows could change."""
    doc = {
        "format": CACHE_FORMAT,
        "samples": [
            {"spec": lay.spec.to_dict(),
             "files": [[f.path, f.size, f.mtime_ns, f.n_rows] + [list(x) for x in f.linked] for f in lay.files],
             "n_rows": lay.n_rows}
            for lay in layouts
        ],
        "transform": transform_config(transform),
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class _SampleCache:
    def __init__(self, name: str, n_rows: int, spec: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                 final_dir: str | None, fp: str) -> None:
        self.name, self.n_rows, self.spec = name, n_rows, dict(spec)
        self.final_dir, self.fp = final_dir, fp
        self.lock = threading.Lock()
        self.complete = False
        self.arrays: dict[str, np.ndarray] = {}
        self.written: np.ndarray | None = None
        self.n_written = 0
        self.tmp_dir: str | None = None
        if final_dir is not None and self._load_existing():
            self.complete = True

    @property
    def n_bytes(self) -> int:
        """Bytes the cached rows take."""
        return self.n_rows * row_bytes(self.spec)

    def _meta(self) -> dict:
        return {"format": CACHE_FORMAT, "fingerprint": self.fp, "sample": self.name,
                "n_rows": self.n_rows,
                "features": {k: [list(s), np.dtype(d).str] for k, (s, d) in self.spec.items()}}

    def _load_existing(self) -> bool:
        meta_path = os.path.join(self.final_dir, "meta.json")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            if meta != self._meta():
                return False
            self.arrays = {k: np.load(os.path.join(self.final_dir, f"{k}.npy"), mmap_mode="r")
                           for k in self.spec}
            return all(a.shape[0] == self.n_rows for a in self.arrays.values())
        except (OSError, ValueError):
            return False

    def _allocate(self) -> None:
        self.written = np.zeros(self.n_rows, bool)
        if self.final_dir is None:
            self.arrays = {k: np.empty((self.n_rows,) + tuple(s), d) for k, (s, d) in self.spec.items()}
            return
        parent = os.path.dirname(self.final_dir)
        os.makedirs(parent, exist_ok=True)
        self.tmp_dir = os.path.join(parent, f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp_dir)
        self.arrays = {
            k: np.lib.format.open_memmap(os.path.join(self.tmp_dir, f"{k}.npy"), mode="w+",
                                         dtype=d, shape=(self.n_rows,) + tuple(s))
            for k, (s, d) in self.spec.items()
        }

    def write(self, start: int, values: Mapping[str, np.ndarray]) -> None:
        """Stores canonical rows ``[start, start + len(values))`` (slice copies, no fancy indexing)."""
        n = len(next(iter(values.values())))
        with self.lock:
            if self.complete:
                return
            if self.written is None:
                self._allocate()
            seen = self.written[start:start + n]
            if seen.all():
                return
            for k, arr in self.arrays.items():
                arr[start:start + n] = values[k]
            self.n_written += n - int(seen.sum())
            seen[:] = True
            if self.n_written == self.n_rows:
                self._publish()

    def _publish(self) -> None:
        if self.final_dir is not None:
            for arr in self.arrays.values():
                arr.flush()
            with open(os.path.join(self.tmp_dir, "meta.json"), "w") as f:
                json.dump(self._meta(), f)
            self.arrays = {}
            try:
                os.rename(self.tmp_dir, self.final_dir)
            except OSError:  # another process published the same cache first
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            if not self._load_existing():
                raise OSError(f"hepflow cache for sample '{self.name}' at {self.final_dir} is unreadable")
            log.info("Cached sample '%s' (%d rows) at %s", self.name, self.n_rows, self.final_dir)
        self.written = None
        self.complete = True



def _remove_stale_tmp(location: str) -> None:
    """Deletes temporary folders left by processes that died mid-epoch."""
    try:
        names = os.listdir(location)
    except FileNotFoundError:
        return
    for name in names:
        pid = _writer_pid(name)
        if pid is not None and pid != os.getpid() and not psutil.pid_exists(pid):
            shutil.rmtree(os.path.join(location, name), ignore_errors=True)


class RowCache:
    """Per-sample caches of transformed rows.

    Args:
        layouts: The samples.
        spec: Feature name → (row shape, dtype) of the cached (transformed) rows.
        fingerprint: See :func:`fingerprint`.
        directory: Root folder for a disk cache, or ``None`` for memory.

    Raises:
        DiskFullError: A disk cache that does not fit the free space of its file
            system (memory-mapped writes to a full disk would crash the process).
    """

    def __init__(self, layouts: Sequence[SampleLayout],
                 spec: Mapping[str, tuple[tuple[int, ...], np.dtype]], *, fingerprint: str,
                 directory: str | None) -> None:
        self.location = None if directory is None else os.path.join(directory, fingerprint[:24])
        if self.location is not None:
            _remove_stale_tmp(self.location)
        self._samples = [
            _SampleCache(lay.spec.name, lay.n_rows, spec,
                         None if self.location is None else os.path.join(self.location, lay.spec.name),
                         fingerprint)
            for lay in layouts
        ]
        if self.location is not None:
            need, free = self.missing_bytes, free_disk_bytes(self.location)
            if need > free:
                todo = [c.name for c in self._samples if not c.complete]
                raise DiskFullError(
                    f"The pipeline cache for samples {todo} needs {need / 1e9:.2f} GB at {self.location}, but that "
                    f"disk has {free / 1e9:.2f} GB free. Free space, point the cache at a larger disk "
                    f"($HEPFLOW_CACHE_DIR or cache=DIR), or stream without a cache (cache=None). "
                    f"Received: cache={directory!r}")

    @property
    def missing_bytes(self) -> int:
        """Bytes still to be cached: the samples not yet complete."""
        return sum(c.n_bytes for c in self._samples if not c.complete)

    def complete(self, sample: int) -> bool:
        """Whether every row of ``sample`` is cached (for a disk cache: published)."""
        return self._samples[sample].complete

    def write(self, sample: int, start: int, values: Mapping[str, np.ndarray]) -> None:
        """Stores rows ``[start, start + n)`` of ``sample`` (canonical order)."""
        self._samples[sample].write(start, values)

    def read(self, sample: int, start: int, stop: int, out: Mapping[str, np.ndarray], dest: int) -> None:
        """Copies canonical rows ``[start, stop)`` of a complete sample into ``out[..][dest:]``."""
        arrays = self._samples[sample].arrays
        for k, target in out.items():
            target[dest:dest + stop - start] = arrays[k][start:stop]


def _writer_pid(name: str) -> int | None:
    """The process id in a temporary folder's name ``.<sample>.tmp-<pid>-<id>``, or None."""
    try:
        return int(name.split(".tmp-")[1].split("-")[0]) if ".tmp-" in name else None
    except (IndexError, ValueError):
        return None


def list_caches(directory: str | None = None) -> list[dict[str, Any]]:
    """The disk caches under ``directory`` (default :func:`default_cache_dir`), largest first.

    Returns:
        One record per fingerprint folder: ``name``, ``path``, ``bytes`` (on disk),
        ``samples`` (published sample name → rows), ``writers`` (ids of live processes
        still filling a sample) and ``modified`` (Unix time of the newest file).
    """
    directory = directory or default_cache_dir()
    if not os.path.isdir(directory):
        return []
    records = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            continue
        size, newest, samples, writers = 0, os.path.getmtime(path), {}, []
        for root, _, files in os.walk(path):
            for f in files:
                st = os.stat(os.path.join(root, f))
                size += st.st_blocks * 512
                newest = max(newest, st.st_mtime)
        for entry in sorted(os.listdir(path)):
            pid = _writer_pid(entry)
            if pid is not None:
                if psutil.pid_exists(pid):
                    writers.append(pid)
                continue
            try:
                with open(os.path.join(path, entry, "meta.json")) as f:
                    samples[entry] = int(json.load(f)["n_rows"])
            except (OSError, ValueError, KeyError):
                continue
        records.append({"name": name, "path": path, "bytes": size, "samples": samples, "writers": writers,
                        "modified": newest})
    return sorted(records, key=lambda r: -r["bytes"])


def remove_caches(names: Sequence[str] | None = None, directory: str | None = None) -> list[str]:
    """Deletes disk caches: the named fingerprint folders, or all with ``names=None``.

    A process that still reads a removed cache keeps its open memory maps; a later pipeline
    rebuilds the cache. Folders a live process is still filling are left alone.

    Returns:
        The paths removed.

    Raises:
        DataError: A name that is not a cache folder under ``directory``.
    """
    records = {r["name"]: r for r in list_caches(directory)}
    if names is not None:
        unknown = [n for n in names if n not in records]
        if unknown:
            raise DataError(f"No pipeline cache named {unknown} in {directory or default_cache_dir()}. "
                            f"Received: {list(names)}; caches there: {sorted(records)}")
    removed = []
    for name in (records if names is None else names):
        record = records[name]
        if record["writers"]:
            log.warning("Cache %s is being filled by process %s; left in place", record["path"], record["writers"])
            continue
        shutil.rmtree(record["path"])
        removed.append(record["path"])
    return removed
