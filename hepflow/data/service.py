"""Pipelines for the tf.data service: chunks read with TensorFlow ops only.

The tf.data service ships a pipeline's graph to worker processes, possibly on other
machines, which cannot run Python functions of the process that built it. With
``service=``, hepflow therefore builds the chunk reader from TensorFlow ops: the
epoch plan (fixed by the seed, since all workers must agree) becomes constant
tensors, and each file is memory-mapped as a ``uint8`` tensor
(``ImmutableConst``), from which every contiguous run of rows is copied at the byte
offset HDF5 reports for the dataset. That needs contiguous, uncompressed,
native-endian datasets (h5py's default layout) at paths that the workers can open.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from hepflow.errors import DataError
from hepflow.data.plan import EpochPlanner
from hepflow.data.readers import WEIGHT, SampleLayout

__all__ = ["check_portable", "portable_chunks", "start_dispatcher", "start_worker"]


def check_portable(layouts: Sequence[SampleLayout], raw_spec: dict, *, cache) -> None:
    """Raises :class:`DataError` if these samples cannot be read by service workers."""
    if cache not in (None, False):
        raise DataError(
            "cache= cannot be combined with service=: each service worker would need its own "
            f"cache. Cache on the workers' side with a plain pipeline instead. Received: cache={cache!r}"
        )
    weighted = [lay.spec.weight_key is not None for lay in layouts]
    if any(weighted) and not all(weighted):
        raise DataError(
            "With service=, either every sample has a weight_key or none has. "
            f"Received: { {lay.spec.name: lay.spec.weight_key for lay in layouts} }"
        )
    for lay in layouts:
        if lay.source is not None:
            first = lay.files[0].path if lay.files else lay.spec.name
            raise DataError(
                f"Sample '{lay.spec.name}' is a {lay.spec.format} sample ({first}); service workers read HDF5 "
                "datasets as raw bytes only. Convert it once with `hepflow convert SPECS OUT_DIR` (native HDF5, "
                "the fastest path anyway) or drop service=. Received: format=" + repr(lay.spec.format))
        for info in lay.files:
            for name in raw_spec:
                if info.byte_offsets.get(name) is None:
                    raise DataError(
                        f"Sample '{lay.spec.name}': dataset '{lay.features[name].path}' in {info.path} is "
                        "chunked, compressed, not native-endian, an external link or a virtual dataset; service "
                        "workers read contiguous, uncompressed, native-endian datasets stored in the file itself "
                        "only (h5py's default layout). Rewrite the file or drop service=. "
                        "Received: a dataset the workers cannot read as raw bytes"
                    )


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Splits sorted row indices into (start, length) runs of consecutive rows."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [(int(r[0]), len(r)) for r in np.split(rows, breaks)]


def _file_bytes(path: str, size: int) -> tf.Tensor:
    """The whole file as a ``uint8`` tensor backed by a read-only memory map (no read, no copy).

    Slicing it copies just the bytes asked for, straight from the page cache; the map is made
    once per function instantiation (per worker and iterator), so reading a run at any offset
    costs what copying it costs. (``FixedLengthRecordDataset`` reads and discards every byte before
    its ``header_bytes``: half a file per run on average.)
    """
    return tf.raw_ops.ImmutableConst(dtype=tf.uint8, shape=[size], memory_region_name=path)


def portable_chunks(layouts: Sequence[SampleLayout], planner: EpochPlanner, raw_spec: dict,
                    key: int) -> tf.data.Dataset:
    """``range(n_chunks)`` → ``(raw features, perm, record ids)`` built from TF ops only.

    Each file is memory-mapped (:func:`_file_bytes`); a chunk's rows are copied out of the maps run
    by run (a run: consecutive rows of one file) in a ``tf.while_loop`` whose body picks the file
    with ``tf.switch_case``, then bit-cast to the features' dtypes. Chunks are read in parallel,
    in order, with the parallelism tf.data tunes on the worker that runs them.
    """
    files = [(lay.index, f) for lay in layouts for f in range(len(lay.files))]
    gid = {sf: g for g, sf in enumerate(files)}
    infos = [layouts[s].files[f] for s, f in files]
    row_bytes = {k: int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for k, (s, d) in raw_spec.items()}
    run_file, run_row, run_len, perms, ids = [], [], [], [], []
    for i in range(planner.n_chunks):
        plan = planner.chunk(key, i)
        fs, rs, ns = [], [], []
        for sample, file, a, b, _ in plan.segments:
            sel = layouts[sample].rows[file]
            rows = np.arange(a, b) if sel is None else sel[a:b]
            for start, n in _runs(rows):
                fs.append(gid[(sample, file)])
                rs.append(start)
                ns.append(n)
        run_file.append(fs)
        run_row.append(rs)
        run_len.append(ns)
        perms.append(plan.perm)
        ids.append(plan.record_ids)
    r_file = tf.ragged.constant(run_file, dtype=tf.int32)
    r_row = tf.ragged.constant(run_row, dtype=tf.int64)
    r_len = tf.ragged.constant(run_len, dtype=tf.int64)
    r_perm = tf.RaggedTensor.from_row_lengths(np.concatenate(perms), [len(p) for p in perms])
    r_ids = tf.RaggedTensor.from_row_lengths(np.concatenate(ids), [len(x) for x in ids])
    offsets = {k: tf.constant([info.byte_offsets[k] for info in infos], tf.int64) for k in raw_spec}

    def read_feature(maps, files_i, rows_i, lens_i, k):
        width = row_bytes[k]

        def body(j, pieces):
            start = offsets[k][files_i[j]] + rows_i[j] * width
            size = lens_i[j] * width
            branches = [lambda m=m: tf.slice(m, [start], [size]) for m in maps]
            return j + 1, pieces.write(j, tf.switch_case(files_i[j], branches))

        pieces = tf.TensorArray(tf.uint8, size=tf.size(files_i), infer_shape=False, element_shape=[None])
        _, pieces = tf.while_loop(lambda j, _: j < tf.size(files_i), body, (0, pieces))
        blob = tf.reshape(pieces.concat(), (-1, width))
        shape, dtype = raw_spec[k]
        dtype = tf.as_dtype(dtype)
        if dtype == tf.bool:  # one byte, 0 or 1 (numpy's and HDF5's bool); bitcast knows no bool
            blob = tf.not_equal(blob, 0)
        elif dtype.size > 1:
            blob = tf.bitcast(tf.reshape(blob, (tf.shape(blob)[0], width // dtype.size, dtype.size)), dtype)
        else:
            blob = tf.bitcast(blob, dtype)
        return tf.reshape(blob, (-1,) + tuple(shape))

    def chunk(i):
        maps = [_file_bytes(info.path, info.size) for info in infos]
        files_i, rows_i, lens_i = r_file[i], r_row[i], r_len[i]
        raw = {k: read_feature(maps, files_i, rows_i, lens_i, k) for k in raw_spec}
        if WEIGHT in raw:
            raw[WEIGHT] = tf.cast(tf.reshape(raw[WEIGHT], (-1,)), tf.float32)
        return raw, r_perm[i], r_ids[i]

    return tf.data.Dataset.range(planner.n_chunks).map(
        chunk, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def assert_finite_rows(raw: dict, ids: tf.Tensor, layouts: Sequence[SampleLayout]) -> dict:
    """In-graph NaN/Inf check naming the file, dataset and row of the first bad row."""
    paths = tf.constant([[info.path for info in lay.files] + [""] * (max(len(x.files) for x in layouts) - len(lay.files))
                         for lay in layouts])
    checks = []
    for k, v in raw.items():
        if not v.dtype.is_floating or k == WEIGHT:
            continue
        bad = tf.reduce_any(~tf.math.is_finite(tf.reshape(v, (tf.shape(v)[0], -1))), axis=1)
        row = tf.argmax(tf.cast(bad, tf.int32))
        where = ids[row]
        msg = tf.strings.format(
            f"feature '{k}' in {{}} holds NaN or Inf at row {{}}; expected "
            "finite values (on_nonfinite='drop' skips such rows)",
            (tf.gather_nd(paths, where[:2]), where[2]))
        checks.append(tf.debugging.Assert(~tf.reduce_any(bad), [msg], summarize=1))
    with tf.control_dependencies(checks):
        return {k: tf.identity(v) for k, v in raw.items()}


def start_dispatcher(*, port: int = 0, work_dir: str | None = None) -> tf.data.experimental.service.DispatchServer:
    """Starts a tf.data service dispatcher in this process (``hepflow data-service dispatcher``).

    Args:
        port: TCP port; 0 picks a free one (read it from ``server.target``).
        work_dir: With a folder, the dispatcher journals its state there and a restarted
            dispatcher carries on with the same jobs (fault tolerance).

    Returns:
        The running server; ``server.target`` is the ``grpc://host:port`` for ``service=``.
    """
    svc = tf.data.experimental.service
    config = svc.DispatcherConfig(port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None)
    return svc.DispatchServer(config)


def start_worker(dispatcher: str, *, port: int = 0) -> tf.data.experimental.service.WorkerServer:
    """Starts a tf.data service worker that serves the dispatcher at ``dispatcher`` (``host:port``).

    Workers run the pipelines' graphs with TensorFlow ops only (see the module docstring), so
    they must be able to open the sample files at the same paths as the training process.
    """
    svc = tf.data.experimental.service
    address = dispatcher.split("://", 1)[-1]
    return svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address, port=port))
