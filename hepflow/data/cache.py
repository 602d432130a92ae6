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

import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import threading
import time
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import psutil

from hepflow.errors import DataError
from hepflow.io import remove_stale_tmp, writer_pid
from hepflow.data.readers import SampleLayout

__all__ = ["CACHE_FORMAT", "DiskFullError", "CacheCorruptError", "block_checksum", "default_cache_dir",
           "free_disk_bytes", "row_bytes", "transform_config",
           "fingerprint", "RowCache", "list_caches", "remove_caches"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: block checksums in meta.json


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
    """A JSON-able description of a transform, used in disk-cache fingerprints.

    Everything that can change the transformed rows is described by value: objects with
    ``get_config()`` (Keras style) by class and config (and a Keras layer's weights by their
    hash); plain functions, lambdas and ``tf.function``s by their source, defaults, and the
    values of the closure cells and globals they read (so ``scaled(2.0)`` and ``scaled(3.0)``,
    or a global changed between runs, get different caches); ``functools.partial`` and bound
    methods by their parts; other callables by their class source and attributes.

    Raises:
        DataError: the transform reads a value that cannot be described (an open file, a
            generator, ...): give it a ``get_config()``, or cache in memory or not at all.
    """
    if transform is None:
        return None
    return _describe(transform, "the transform", set(), 0)


_MAX_DEPTH = 12


def _array_digest(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"array": a.dtype.str, "shape": list(a.shape), "sha256": hashlib.sha256(a.view(np.uint8)).hexdigest()}


def _code_names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the functions and lambdas defined inside it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _describe(value: Any, where: str, seen: set[int], depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and NaN-safe in JSON
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (np.ndarray, np.generic)):
        return _array_digest(np.asarray(value))
    if hasattr(value, "numpy") and hasattr(value, "dtype") and hasattr(value, "shape"):  # tf.Tensor / Variable
        return _array_digest(np.asarray(value.numpy()))
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, type):
        return {"class": f"{value.__module__}.{value.__qualname__}"}
    if depth > _MAX_DEPTH:
        raise DataError(f"{where} nests values too deeply to fingerprint for a disk cache; give the transform a "
                        "get_config(), or use cache='memory' or cache=None. Received: a nesting deeper than "
                        f"{_MAX_DEPTH}")
    if id(value) in seen:  # a recursive function or a cycle: described where first met
        return {"ref": f"{type(value).__qualname__}"}
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        return {"mapping": sorted(([str(k), _describe(v, f"{where}[{k!r}]", seen, depth + 1)]
                                   for k, v in value.items()), key=lambda kv: kv[0])}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_describe(v, f"{where}[{i}]", seen, depth + 1) for i, v in enumerate(items)]
    if isinstance(value, functools.partial):
        return {"partial": _describe(value.func, where, seen, depth + 1),
                "args": _describe(value.args, f"{where} (partial args)", seen, depth + 1),
                "keywords": _describe(value.keywords, f"{where} (partial keywords)", seen, depth + 1)}
    if isinstance(value, types.MethodType):
        return {"method": _describe(value.__func__, where, seen, depth + 1),
                "self": _describe(value.__self__, f"{where} (its object)", seen, depth + 1)}
    if hasattr(value, "get_config"):
        out = {"class": f"{type(value).__module__}.{type(value).__qualname__}",
               "config": _describe(value.get_config(), f"{where} (get_config)", seen, depth + 1)}
        if callable(getattr(value, "get_weights", None)):  # a Keras layer or model: its config says no weight
            out["weights"] = [_array_digest(np.asarray(w)) for w in value.get_weights()]
        return out
    fn = getattr(value, "python_function", None)  # a tf.function
    if fn is not None:
        return _describe(fn, where, seen, depth)
    if isinstance(value, types.FunctionType):
        name = f"{value.__module__}.{value.__qualname__}"
        try:
            src = inspect.getsource(value)
        except (OSError, TypeError):
            src = value.__code__.co_code.hex()
        out = {"function": name, "source_sha256": hashlib.sha256(src.encode()).hexdigest(),
               "defaults": _describe(value.__defaults__, f"{where} ({name} defaults)", seen, depth + 1),
               "kwdefaults": _describe(value.__kwdefaults__, f"{where} ({name} defaults)", seen, depth + 1)}
        cells = value.__closure__ or ()
        closure = {}
        for var, cell in zip(value.__code__.co_freevars, cells):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                content = None
            closure[var] = _describe(content, f"`{var}`, which {name} reads from its closure", seen, depth + 1)
        out["closure"] = closure
        glob = {}
        for var in sorted(_code_names(value.__code__)):
            if var in value.__globals__:
                glob[var] = _describe(value.__globals__[var], f"the global `{var}`, which {name} reads", seen,
                                      depth + 1)
        out["globals"] = glob
        return out
    if isinstance(value, types.BuiltinFunctionType):
        return {"builtin": f"{getattr(value, '__module__', '')}.{value.__qualname__}"}
    if callable(value) and hasattr(value, "__dict__"):  # a callable object without get_config
        cls = type(value)
        try:
            src = inspect.getsource(cls)
        except (OSError, TypeError):
            src = repr(cls)
        return {"object": f"{cls.__module__}.{cls.__qualname__}",
                "source_sha256": hashlib.sha256(src.encode()).hexdigest(),
                "state": _describe(vars(value), f"{where} (attributes of {cls.__qualname__})", seen, depth + 1)}
    raise DataError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which hepflow cannot fingerprint, so a "
        "disk cache could serve rows made with other settings. Give the transform a get_config() that returns its "
        "settings (as hepflow.data.transforms.Normalize does), or use cache='memory' or cache=None. "
        f"Received: {type(value).__qualname__}")


def fingerprint(layouts: Sequence[SampleLayout], transform: Callable | None,
                extra: Mapping[str, Any] | None = None) -> str:
    """A hex digest that changes whenever the cached rows could change."""
    doc = {
        "format": CACHE_FORMAT,
        "samples": [
            {"spec": lay.spec.to_dict(),
             "files": [[f.path, f.size, f.mtime_ns, f.ctime_ns, f.n_rows] + [list(x) for x in f.linked]
                       for f in lay.files],
             "n_rows": lay.n_rows}
            for lay in layouts
        ],
        "transform": transform_config(transform),
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class CacheCorruptError(DataError):
    """A published disk cache whose files do not match what its ``meta.json`` promises."""


_CHECK_BYTES = 1 << 20  # bytes of rows per checksum block


def block_checksum(block: np.ndarray) -> int:
    """The wrap-around sum of a block's bytes read as 64-bit words (tail bytes added singly).

    About 15 GB/s on one core and the GIL released: it catches overwritten, zeroed or
    truncated bytes, not words swapped within one block.
    """
    raw = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
    n8 = len(raw) // 8 * 8
    words = int(np.add.reduce(raw[:n8].view(np.uint64), dtype=np.uint64)) if n8 else 0
    return (words + int(raw[n8:].sum(dtype=np.uint64))) % (1 << 64)


class _SampleCache:
    """One sample's cached rows: in memory, or ``.npy`` files published under ``final_dir``.

    A published disk cache is checked when it is opened (``meta.json`` readable and as
    expected, every ``.npy`` of the expected shape, dtype and size) and each block of rows
    against its checksum the first time this process reads it. A cache that fails either is
    moved aside (``.<sample>.corrupt-<time>``) with a warning and rebuilt from the files.
    """

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
        self.check_rows = max(8, (_CHECK_BYTES // max(row_bytes(self.spec), 1)) // 8 * 8)
        self.n_blocks = -(-n_rows // self.check_rows)
        self.checksums: dict[str, list[int]] = {}
        self.verified = np.zeros(self.n_blocks, bool)
        if final_dir is not None and os.path.exists(final_dir):
            problem = self._load_existing()
            if problem is None:
                self.complete = True
            else:
                self._move_aside(problem)

    @property
    def n_bytes(self) -> int:
        """Bytes the cached rows take."""
        return self.n_rows * row_bytes(self.spec)

    def _meta(self) -> dict:
        return {"format": CACHE_FORMAT, "fingerprint": self.fp, "sample": self.name,
                "n_rows": self.n_rows, "check_rows": self.check_rows,
                "features": {k: [list(s), np.dtype(d).str] for k, (s, d) in self.spec.items()}}

    def _load_existing(self) -> str | None:
        """Opens the published cache; returns what is wrong with it, or ``None`` when it is sound."""
        meta_path = os.path.join(self.final_dir, "meta.json")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            return f"meta.json is unreadable ({type(e).__name__}: {e})"
        if not isinstance(meta, dict) or {k: meta.get(k) for k in self._meta()} != self._meta():
            return "meta.json does not describe this sample's rows"
        checksums = meta.get("checksums")
        if (not isinstance(checksums, dict) or set(checksums) != set(self.spec)
                or any(not isinstance(v, list) or len(v) != self.n_blocks for v in checksums.values())):
            return f"meta.json lacks the checksums of its {self.n_blocks} blocks"
        arrays = {}
        for k, (shape, dtype) in self.spec.items():
            path = os.path.join(self.final_dir, f"{k}.npy")
            try:
                a = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                return f"{k}.npy is unreadable ({type(e).__name__}: {e})"
            if a.shape != (self.n_rows,) + tuple(shape) or a.dtype != np.dtype(dtype):
                return f"{k}.npy holds {a.shape} {a.dtype}, expected {(self.n_rows,) + tuple(shape)} {np.dtype(dtype)}"
            if a.offset + a.nbytes != os.path.getsize(path):
                return f"{k}.npy has {os.path.getsize(path)} bytes, expected {a.offset + a.nbytes}"
            arrays[k] = a
        self.arrays, self.checksums = arrays, {k: [int(c) for c in v] for k, v in checksums.items()}
        self.verified = np.zeros(self.n_blocks, bool)
        return None

    def _move_aside(self, problem: str) -> None:
        """Renames a bad published cache out of the way (hepflow wrote it; it is kept for a look)."""
        aside = os.path.join(os.path.dirname(self.final_dir),
                             f".{self.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
        try:
            os.rename(self.final_dir, aside)
            where = f"moved to {aside}"
        except FileNotFoundError:  # another process moved it first
            where = "already moved aside"
        log.warning("hepflow cache for sample '%s' at %s is corrupt: %s; %s, rebuilding it from the files.",
                    self.name, self.final_dir, problem, where)
        self.complete, self.arrays, self.checksums = False, {}, {}
        self.written, self.n_written, self.tmp_dir = None, 0, None

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

    def _block_checksums(self, arr: np.ndarray) -> list[int]:
        return [block_checksum(arr[b * self.check_rows:(b + 1) * self.check_rows]) for b in range(self.n_blocks)]

    def _publish(self) -> None:
        if self.final_dir is not None:
            for arr in self.arrays.values():
                arr.flush()
            checksums = {k: self._block_checksums(arr) for k, arr in self.arrays.items()}
            with open(os.path.join(self.tmp_dir, "meta.json"), "w") as f:
                json.dump({**self._meta(), "checksums": checksums}, f)
                f.flush()
                os.fsync(f.fileno())
            self.arrays = {}
            try:
                os.rename(self.tmp_dir, self.final_dir)
            except OSError:  # another process published the same cache first
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            problem = self._load_existing()
            if problem is not None:
                raise CacheCorruptError(f"hepflow cache for sample '{self.name}' at {self.final_dir} is unreadable "
                                        f"right after it was written: {problem}. Received: a failed cache write")
            # what this process wrote and summed is known to be good; another process's copy is checked on read
            self.verified[:] = checksums == self.checksums
            log.info("Cached sample '%s' (%d rows) at %s", self.name, self.n_rows, self.final_dir)
        self.written = None
        self.complete = True

    def read(self, start: int, stop: int, out: Mapping[str, np.ndarray], dest: int) -> None:
        """Copies canonical rows ``[start, stop)`` into ``out[..][dest:]`` and checks the blocks not yet checked.

        Raises:
            CacheCorruptError: a block does not match its checksum; the cache has been moved
                aside and this sample is no longer complete (its rows come from the files again).
        """
        arrays = self.arrays
        if not self.complete or not arrays:  # moved aside by another thread since the caller looked
            raise CacheCorruptError(f"hepflow cache for sample '{self.name}' was moved aside while in use. "
                                    "Received: an incomplete cache")
        for k, target in out.items():
            target[dest:dest + stop - start] = arrays[k][start:stop]
        if self.final_dir is None:
            return
        rows = self.check_rows
        for b in range(start // rows, (stop - 1) // rows + 1):
            if self.verified[b]:
                continue
            lo, hi = b * rows, min((b + 1) * rows, self.n_rows)
            for k, arr in arrays.items():
                # a block inside [start, stop) is summed in the copy just made (hot in the CPU cache)
                block = out[k][dest + lo - start:dest + hi - start] if start <= lo and hi <= stop else arr[lo:hi]
                if block_checksum(block) != self.checksums[k][b]:
                    problem = f"rows {lo}:{hi} of {k}.npy do not match their checksum"
                    with self.lock:
                        if self.arrays is arrays:  # the first thread to notice moves it aside
                            self._move_aside(problem)
                    raise CacheCorruptError(f"hepflow cache for sample '{self.name}': {problem}. "
                                            "Received: corrupt cache bytes")
            self.verified[b] = True


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
            remove_stale_tmp(self.location)
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
        """Copies canonical rows ``[start, stop)`` of a complete sample into ``out[..][dest:]``.

        Raises:
            CacheCorruptError: a disk cache's bytes do not match their checksums; the sample's
                cache has been moved aside and will be rebuilt (read its rows from the files).
        """
        self._samples[sample].read(start, stop, out, dest)


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
            pid = writer_pid(entry)
            if pid is not None:
                if psutil.pid_exists(pid):
                    writers.append(pid)
                continue
            if entry.startswith("."):  # a corrupt cache moved aside
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
