"""HDF5 readers: inspect the files of a sample once, then read contiguous blocks.

Inspection (at pipeline build time) validates keys, shapes and dtypes and
computes row selections. Reading happens in ``tf.data`` worker threads; every
thread opens its own ``h5py.File`` handles (never shared between threads or
processes) and reads contiguous row ranges straight into preallocated buffers.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping, Sequence

import h5py
import numpy as np

from hepflow.errors import DataError
from hepflow.data.samples import SampleSpec
from hepflow.data.selection import evaluate_selection, selection_names
from hepflow.data.sources import FileSource, inspect_source

__all__ = ["FeatureInfo", "FileInfo", "SampleLayout", "inspect_sample", "BlockReader", "WEIGHT",
           "aligned_empty"]

log = logging.getLogger(__name__)

WEIGHT = "__weight__"  # internal feature name for a sample's per-row weight
_SCAN_ROWS = 65_536  # rows per read while scanning for selections / non-finite values


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One feature of a sample: HDF5 path, per-row shape and dtype."""

    path: str
    row_shape: tuple[int, ...]
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """A file as it was when the pipeline was built (to detect changes mid-epoch).

    Attributes:
        byte_offsets: Feature name → byte offset of its data in the file, for
            contiguous, unfiltered, native-endian datasets stored in this file,
            which are then read with ``os.preadv`` (no HDF5 library call, no
            global lock, GIL released); ``None`` for the others (chunked,
            compressed, big-endian on a little-endian machine, external links,
            virtual datasets), read with h5py, which converts byte order.
        linked: ``(path, size, mtime_ns)`` of the other files the keys' data live in
            (external links, sources of virtual datasets), watched for changes
            like the file itself.
        ctime_ns: The inode's change time, for cache fingerprints: a file rewritten in
            place with its old size and mtime restored still gets a new ctime (so do
            ``chmod`` and new hard links, which then only cost a rebuilt cache).
    """

    path: str
    n_rows: int
    size: int
    mtime_ns: int
    byte_offsets: dict = dataclasses.field(default_factory=dict, compare=False)
    linked: tuple = ()
    ctime_ns: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass
class SampleLayout:
    """A validated sample: its files, features and the rows that pass its selection.

    Attributes:
        rows: Per file, the selected row indices, or ``None`` when every row is used.
        counts: Per file, the number of selected rows.
        offsets: Per file, the index of its first selected row in the sample.
    """

    spec: SampleSpec
    index: int
    files: list[FileInfo]
    features: dict[str, FeatureInfo]
    rows: list[np.ndarray | None]
    counts: np.ndarray
    offsets: np.ndarray
    n_dropped_nonfinite: int = 0
    source: FileSource | None = None  # reads the rows of ROOT, Parquet, published-layout and tfds samples

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """``np.empty`` aligned to ``align`` bytes.

    TensorFlow adopts a 64-byte-aligned array returned by ``tf.numpy_function``
    without copying it; numpy's own large allocations are only 16-byte aligned.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def _open(path: str, sample: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"Sample '{sample}': file not found: {path}. Received: a missing path") from None
    except OSError as e:
        raise DataError(
            f"Sample '{sample}': cannot open {path} as HDF5; expected a complete, readable HDF5 "
            f"file (is it truncated or corrupt?). Received: {e}"
        ) from None


def _dataset(f: h5py.File, key: str, path: str, sample: str) -> h5py.Dataset:
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        available: list[str] = []
        f.visititems(lambda n, o: available.append(n) if isinstance(o, h5py.Dataset) else None)
        what = "is a group, not a dataset" if obj is not None else "does not exist"
        raise DataError(
            f"Sample '{sample}': key '{key}' {what} in {path}; expected an HDF5 dataset. "
            f"Available datasets: {available[:20]}. Received: keys contains {key!r}"
        )
    if obj.dtype.kind not in "biuf" or obj.ndim == 0:
        raise DataError(
            f"Sample '{sample}': dataset '{key}' in {path} must be a numeric array with rows on "
            f"axis 0. Received: dtype={obj.dtype}, shape={obj.shape}"
        )
    return obj


def inspect_sample(spec: SampleSpec, index: int, *, on_nonfinite: str = "error") -> SampleLayout:
    """Opens every file of a sample once, validates it and applies its selection.

    Samples of other formats (ROOT, Parquet, the published top-tagging files, tfds) are
    inspected by their :mod:`hepflow.data.sources`.

    Raises:
        DataError: missing/corrupt files, missing keys, inconsistent shapes or
            dtypes, an empty sample, or a selection that cannot be evaluated.
    """
    if spec.format != "hdf5":
        return inspect_source(spec, index, on_nonfinite=on_nonfinite)
    paths = spec.resolve_files()
    keys = dict(spec.keys)
    if spec.weight_key is not None:
        keys[WEIGHT] = spec.weight_key
    features: dict[str, FeatureInfo] = {}
    files, rows, counts, dropped = [], [], [], 0
    sel_names = selection_names(spec.selection) if spec.selection else set()
    for path in paths:
        st = os.stat(path)
        with _open(path, spec.name) as f:
            n_rows = None
            for name, key in keys.items():
                d = _dataset(f, key, path, spec.name)
                # rows are handed out in the machine's byte order: h5py converts '>f4' on read
                info = FeatureInfo(key, tuple(d.shape[1:]), np.dtype(d.dtype).newbyteorder("="))
                if n_rows is None:
                    n_rows, first = d.shape[0], key
                elif d.shape[0] != n_rows:
                    raise DataError(
                        f"Sample '{spec.name}': in {path}, dataset '{key}' has {d.shape[0]} rows but "
                        f"'{first}' has {n_rows}; all keys of a file must have the same number of "
                        f"rows. Received: shape={d.shape}"
                    )
                if name == WEIGHT and info.row_shape not in ((), (1,)):
                    raise DataError(
                        f"Sample '{spec.name}': weight_key '{key}' in {path} must hold one "
                        f"number per row. Received: shape={d.shape}"
                    )
                prev = features.setdefault(name, info)
                if prev.row_shape != info.row_shape or prev.dtype != info.dtype:
                    raise DataError(
                        f"Sample '{spec.name}': dataset '{key}' in {path} has rows of shape "
                        f"{info.row_shape} and dtype {info.dtype}; expected {prev.row_shape} "
                        f"{prev.dtype} as in the sample's first file. Received: shape={d.shape}, dtype={d.dtype}"
                    )
            mask = None
            if spec.selection:
                mask = _selection_mask(f, spec, path, sel_names, n_rows)
            if on_nonfinite == "drop":
                finite = _finite_mask(f, keys, n_rows)
                kept = finite if mask is None else (mask & finite)
                dropped += int((~finite if mask is None else (mask & ~finite)).sum())
                mask = kept
            sel = None if mask is None or mask.all() else np.flatnonzero(mask).astype(np.int64)
            offsets = {name: _raw_offset(f[key], path, st.st_size) for name, key in keys.items()}
            linked = _linked_files(f, keys.values(), path, spec.name)
            files.append(FileInfo(path, int(n_rows), st.st_size, st.st_mtime_ns, offsets, linked, st.st_ctime_ns))
            rows.append(sel)
            counts.append(n_rows if sel is None else len(sel))
    counts_a = np.asarray(counts, np.int64)
    layout = SampleLayout(
        spec=spec, index=index, files=files, features=features, rows=rows, counts=counts_a,
        offsets=np.concatenate([[0], np.cumsum(counts_a)[:-1]]).astype(np.int64),
        n_dropped_nonfinite=dropped,
    )
    if dropped:
        log.warning("Sample '%s': dropped %d rows with NaN/Inf values (on_nonfinite='drop').",
                    spec.name, dropped)
    if layout.n_rows == 0:
        why = " after its selection" if spec.selection else ""
        raise DataError(
            f"Sample '{spec.name}' is empty{why}: expected at least one row. "
            f"Received: files={paths!r}, rows per file={counts}"
        )
    return layout


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _data_file(d: h5py.Dataset) -> str:
    """The file that holds a dataset's data (another file for an external link)."""
    return d.file.filename


def _linked_files(f: h5py.File, keys, path: str, sample: str) -> tuple[tuple[str, int, int], ...]:
    """``(path, size, mtime_ns)`` of the files other than ``path`` that hold the keys' data."""
    out: dict[str, tuple[str, int, int]] = {}
    for key in keys:
        d = f[key]
        sources = [_data_file(d)]
        if d.is_virtual:
            base = os.path.dirname(os.path.abspath(_data_file(d)))
            sources += [s.file_name if s.file_name == "." or os.path.isabs(s.file_name)
                        else os.path.join(base, s.file_name) for s in d.virtual_sources()]
        for source in sources:
            if source == "." or _same_file(source, path):
                continue
            try:
                st = os.stat(source)
            except OSError:
                raise DataError(f"Sample '{sample}': key '{key}' in {path} links to {source}, which cannot be "
                                "opened; expected the linked file beside it. Received: a missing linked file") from None
            out[os.path.abspath(source)] = (os.path.abspath(source), st.st_size, st.st_mtime_ns)
    return tuple(sorted(out.values()))


def _raw_offset(d: h5py.Dataset, path: str, file_size: int) -> int | None:
    """Byte offset of a dataset's data in ``path`` if it can be read there as plain bytes, else ``None``."""
    if d.is_virtual or not _same_file(_data_file(d), path):  # the bytes live in other files
        return None
    if d.chunks is not None or d.compression is not None or d.id.get_create_plist().get_nfilters():
        return None
    if not d.dtype.isnative or d.dtype.hasobject:
        return None
    offset = d.id.get_offset()
    if offset is None or offset + d.id.get_storage_size() > file_size or d.size == 0:
        return None
    return int(offset)


def _selection_mask(f, spec: SampleSpec, path: str, names: set[str], n_rows: int) -> np.ndarray:
    cols = {}
    for name in names:
        if name not in spec.keys:
            raise DataError(
                f"Sample '{spec.name}': selection refers to '{name}', which is not a key of the "
                f"sample; expected one of {sorted(spec.keys)}. Received: selection={spec.selection!r}"
            )
        d = f[spec.keys[name]]
        if d.shape[1:] not in ((), (1,)):
            raise DataError(
                f"Sample '{spec.name}': selection uses '{name}' (dataset '{spec.keys[name]}' in "
                f"{path}), which must hold one number per row. Received: shape={d.shape}"
            )
        cols[name] = d[...].reshape(n_rows)
    return evaluate_selection(spec.selection, cols) if cols else np.ones(n_rows, bool)


def _finite_mask(f, keys: Mapping[str, str], n_rows: int) -> np.ndarray:
    ok = np.ones(n_rows, bool)
    for key in keys.values():
        d = f[key]
        if d.dtype.kind != "f":
            continue
        for start in range(0, n_rows, _SCAN_ROWS):
            block = d[start:start + _SCAN_ROWS]
            ok[start:start + len(block)] &= np.isfinite(block.reshape(len(block), -1)).all(axis=1)
    return ok


class BlockReader:
    """Reads row ranges of samples into preallocated buffers, one handle set per thread.

    Args:
        layouts: The validated samples.
        check_finite: Raise :class:`DataError` naming file, key and row when a
            float feature holds NaN or Inf.
    """

    def __init__(self, layouts: Sequence[SampleLayout], *, check_finite: bool = True) -> None:
        self._layouts = list(layouts)
        self._check_finite = check_finite
        self._local = threading.local()

    def _handle(self, info: FileInfo, sample: str, source: FileSource | None = None
                ) -> tuple[h5py.File, dict[str, h5py.Dataset], int]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # never reuse handles across a fork
            local.pid, local.files = os.getpid(), {}
        try:
            st = os.stat(info.path)
        except FileNotFoundError:
            raise DataError(
                f"Sample '{sample}': {info.path} disappeared while the pipeline was reading it. "
                "Received: a missing file"
            ) from None
        if (st.st_size, st.st_mtime_ns) != (info.size, info.mtime_ns):
            self._forget(local.files, info.path)
            raise DataError(
                f"Sample '{sample}': {info.path} changed while the pipeline was using it "
                f"(expected size {info.size} and mtime_ns {info.mtime_ns}); rebuild the dataset. "
                f"Received: size {st.st_size}, mtime_ns {st.st_mtime_ns}"
            )
        for linked, size, mtime_ns in info.linked:
            try:
                now = os.stat(linked)
                changed = (now.st_size, now.st_mtime_ns) != (size, mtime_ns)
            except OSError:
                changed = True
            if changed:
                self._forget(local.files, info.path)
                raise DataError(
                    f"Sample '{sample}': {linked}, which {info.path} links to, changed or disappeared while the "
                    f"pipeline was using it (expected size {size} and mtime_ns {mtime_ns}); rebuild the dataset. "
                    "Received: a changed linked file"
                )
        f = local.files.get(info.path)
        if f is None and source is not None:
            f = local.files[info.path] = (source.open(info.path), {}, -1)
        elif f is None:
            h = _open(info.path, sample)
            fd = os.open(info.path, os.O_RDONLY) if any(v is not None for v in info.byte_offsets.values()) else -1
            f = local.files[info.path] = (h, {}, fd)
        return f

    def read(self, sample: int, file: int, start: int, stop: int,
             out: Mapping[str, np.ndarray], dest: int) -> None:
        """Reads selected rows ``[start, stop)`` of one file into ``out[name][dest:...]``."""
        lay = self._layouts[sample]
        info = lay.files[file]
        if lay.source is not None:
            self._read_source(lay, file, start, stop, out, dest)
            return
        f, datasets, fd = self._handle(info, lay.spec.name)
        n = stop - start
        sel = lay.rows[file]
        try:
            for name, feat in lay.features.items():
                target = out[name]
                offset = info.byte_offsets.get(name)
                if (offset is not None and sel is None and target.dtype == feat.dtype
                        and target.shape[1:] == feat.row_shape):
                    self._pread(fd, target[dest:dest + n], offset + start * target[0:1].nbytes, info, feat)
                    self._maybe_check(file, sample, start, name, target[dest:dest + n])
                    continue
                d = datasets.get(feat.path)
                if d is None:  # looking a dataset up costs ~75 µs: once per thread and file
                    d = datasets[feat.path] = f[feat.path]
                if sel is None:
                    lo, hi, idx = start, stop, None
                else:
                    idx = sel[start:stop]
                    lo, hi = int(idx[0]), int(idx[-1]) + 1
                    if hi - lo == n:
                        idx = None
                if idx is None and target.shape[1:] == feat.row_shape and target.dtype == feat.dtype:
                    d.read_direct(target, np.s_[lo:hi], np.s_[dest:dest + n])
                elif idx is None:
                    target[dest:dest + n] = d[lo:hi].reshape((n,) + target.shape[1:])
                elif hi - lo <= 8 * n:
                    target[dest:dest + n] = d[lo:hi][idx - lo].reshape((n,) + target.shape[1:])
                else:
                    target[dest:dest + n] = d[idx].reshape((n,) + target.shape[1:])
                self._maybe_check(file, sample, start, name, target[dest:dest + n])
        except DataError:
            raise
        except (OSError, ValueError, TypeError) as e:
            raise DataError(
                f"Sample '{lay.spec.name}': reading rows {start}:{stop} of {info.path} failed; "
                f"expected an intact HDF5 file. Received: {type(e).__name__}: {e}"
            ) from None

    def _read_source(self, lay: SampleLayout, file: int, start: int, stop: int,
                     out: Mapping[str, np.ndarray], dest: int) -> None:
        info = lay.files[file]
        handle = self._handle(info, lay.spec.name, lay.source)[0]
        n = stop - start
        sel = lay.rows[file]
        idx = None
        lo, hi = start, stop
        if sel is not None:
            idx = sel[start:stop]
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            idx = None if hi - lo == n else idx - lo
        try:
            rows = lay.source.read(handle, lo, hi)
        except DataError:
            raise
        except Exception as e:  # uproot, pyarrow, h5py and TF raise their own types on damaged files
            self._forget(self._local.files, info.path)
            raise DataError(
                f"Sample '{lay.spec.name}': reading entries {lo}:{hi} of {info.path} failed; expected an intact "
                f"{lay.spec.format} file. Received: {type(e).__name__}: {e}") from None
        for name in lay.features:
            block = rows[name] if idx is None else rows[name][idx]
            out[name][dest:dest + n] = block.reshape((n,) + out[name].shape[1:])
            self._maybe_check(file, lay.index, start, name, out[name][dest:dest + n])

    @staticmethod
    def _pread(fd: int, target: np.ndarray, offset: int, info: FileInfo, feat: FeatureInfo) -> None:
        view = memoryview(target).cast("B")
        done = 0
        while done < len(view):  # a single read may return fewer bytes (e.g. > 2 GB)
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise DataError(
                    f"{info.path}: dataset '{feat.path}' ends early: expected {len(view)} bytes at "
                    f"offset {offset}; is the file truncated? Received: {done} bytes"
                )
            done += got

    @staticmethod
    def _forget(files: dict, path: str) -> None:
        entry = files.pop(path, None)
        if entry is not None:
            entry[0].close()
            if entry[2] >= 0:
                os.close(entry[2])

    def _maybe_check(self, file: int, sample: int, start: int, name: str, block: np.ndarray) -> None:
        if not self._check_finite or block.dtype.kind != "f":
            return
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(block.sum()):  # float32 pairwise sum: fast; an overflow only costs the exact check
                return
        self.assert_finite(sample, file, start, name, block)

    def assert_finite(self, sample: int, file: int, start: int, name: str, block: np.ndarray) -> None:
        """Raises :class:`DataError` naming file, key and row if ``block`` holds NaN or Inf.

        ``block`` holds selected rows ``start, start + 1, ...`` of feature ``name``
        of one file of a sample.
        """
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if not bad.any():
            return
        lay = self._layouts[sample]
        sel = lay.rows[file]
        i = int(np.argmax(bad))
        row = int(sel[start + i]) if sel is not None else start + i
        raise DataError(
            f"Sample '{lay.spec.name}': dataset '{lay.features[name].path}' in {lay.files[file].path} "
            f"holds NaN or Inf at row {row} ({int(bad.sum())} such rows in this block); expected "
            f"finite values. Use on_nonfinite='drop' to skip such rows. Received: {block[i].ravel()[:8].tolist()}"
        )
