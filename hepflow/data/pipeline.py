"""``make_dataset``: a ``tf.data`` pipeline from sample specifications.

Data flow (see ``docs/architecture.md``)::

    epoch key ─► chunk index ─► plan (numpy) ─► read blocks (h5py, per-thread handles)
      ─► transform (TF, first epoch only when cached) ─► cache ─► one gather that
      shuffles the chunk and lays out batches by class ─► rebatch ─► prefetch
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import psutil
import tensorflow as tf

from hepflow.data.cache import (CacheCorruptError, DiskFullError, RowCache, default_cache_dir, fingerprint,
                                row_bytes)
from hepflow.errors import DataError
from hepflow.data.plan import EPOCH_MODES, MIX_MODES, ChunkPlan, EpochPlanner
from hepflow.data.readers import WEIGHT, BlockReader, SampleLayout, aligned_empty, inspect_sample
from hepflow.data.samples import SampleSpec, load_specs
from hepflow.data.service import assert_finite_rows, check_portable, portable_chunks

__all__ = ["make_dataset", "Pipeline", "RECORD_ID"]

log = logging.getLogger(__name__)

RECORD_ID = "record_id"
_BLOCK_BYTES = 4 << 20  # contiguous bytes per HDF5 read: large enough to amortize h5py's per-call cost
_CHUNK_BYTES = 16 << 20  # minimum bytes read per chunk (the per-chunk Python/TF overhead is ~0.1 ms)
_MAX_CHUNK_BYTES = 128 << 20  # bounds memory whatever `shuffle` asks for

Transform = Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


def make_dataset(
    specs: Sequence[SampleSpec] | str | os.PathLike,
    *,
    batch_size: int = 256,
    transform: Transform | None = None,
    mix: str = "exact",
    epoch: str | int = "shortest",
    shuffle: int = 10_000,
    chunk_rows: int | None = None,
    cache: str | bool | None = None,
    memory_budget: int | None = None,
    num_readers: int | None = None,
    block_rows: int | None = None,
    seed: int | None = None,
    deterministic: bool = True,
    with_record_id: bool = False,
    on_nonfinite: str = "error",
    drop_remainder: bool | None = None,
    prefetch: int = 2,
    service: str | None = None,
    service_compression: str | None = None,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """Builds a batched ``tf.data.Dataset`` of ``(features, label[, weight])``.

    Args:
        specs: Sample specs, or a YAML file / string that :func:`load_specs` reads.
        batch_size: Rows per batch (global batch size).
        transform: A TF function mapping a dict of batched feature tensors to a
            dict of batched tensors (rows in, rows out), e.g.
            ``hepflow.data.transforms.Normalize``. Runs in the graph.
        mix: ``"exact"`` (every batch holds rows of each sample in proportion to
            the rates, e.g. 64 + 192 for rates 1:3 at 256) or ``"sampled"``
            (each row's sample drawn with probability proportional to its rate).
        epoch: ``"shortest"`` (default: ends when the first sample runs out),
            ``"longest"`` (ends when the largest runs out; smaller ones repeat),
            an int number of batches, or ``"all"`` (every row once; rates ignored).
        shuffle: Shuffle window in rows; 0 disables shuffling. Block order is
            reshuffled over the whole sample every pass; rows are permuted within
            windows of ``chunk_rows`` rows.
        chunk_rows: Rows read, transformed and shuffled together (rounded to
            whole batches); default ``max(shuffle, ~16 MB of rows)``, at most
            ~128 MB. A streaming pipeline holds about ``num_readers + cores + 2``
            chunks plus ``prefetch`` batches (see docs/data.md).
        cache: ``None``/``False`` (no cache), ``"memory"``, a directory path, or
            ``"auto"`` (memory if the transformed data fits ``memory_budget``,
            otherwise ``$HEPFLOW_CACHE_DIR`` or ``~/.cache/hepflow/pipeline``).
        memory_budget: Bytes ``cache="auto"`` may use in memory; default half
            of the currently available RAM.
        num_readers: Chunks read in parallel (threads); default
            ``min(2, usable cores)`` (the process's CPU affinity). Contiguous uncompressed datasets are read
            with ``os.preadv``, which releases the GIL, so readers run in
            parallel; chunked or compressed datasets go through h5py, which
            serializes all calls in a process. Transforms and shuffling run
            in a separate stage on every core the process may use.
        block_rows: Contiguous rows per HDF5 read and per shuffled block;
            default ~4 MB worth of rows.
        seed: Seed for shuffling and sampled mixing. With a seed and
            ``deterministic=True`` two pipelines yield identical batches, and
            each epoch is reshuffled differently.
        deterministic: Keep output order independent of thread timing.
        with_record_id: Add ``features["record_id"]``: ``(batch, 3)`` int64 of
            (sample index, file index, row in file).
        on_nonfinite: ``"error"`` (raise naming file, key and row) or ``"drop"``
            (scan the files once at build time, skip and log such rows).
        drop_remainder: With ``epoch="all"``, drop the last short batch; default
            ``None`` keeps it there, so that every record comes once (mixed epochs
            always yield full batches).
        prefetch: Batches to prefetch (an int >= 0, or ``tf.data.AUTOTUNE``).
        service: ``"grpc://host:port"`` of a tf.data service dispatcher. The
            service's workers (other processes or machines) then read and
            transform the chunks, each chunk once per epoch
            (``distributed_epoch``), with TensorFlow ops only: the files must be
            contiguous, uncompressed HDF5 at paths the workers can open, and
            ``cache`` must be off. The epoch key is fixed by ``seed``, so every
            epoch has the same order; batches arrive as workers finish them.
        service_compression: ``None`` (default: batches travel uncompressed) or ``"AUTO"``
            (the service compresses them with snappy). On one machine compression kept one
            worker at ≤ 90k jets/s where uncompressed batches often reached 172k
            (``tools/bench_service.py``, docs/data.md); across a network
            slower than the workers' output it can pay off for padded features, which are
            mostly zeros.
        shard: ``(index, count)``: yield only this pipeline's share of every epoch, the chunks
            ``index, index + count, …`` of the epoch's plan, so that ``count`` pipelines with
            the same seed (one per training worker) read each record of an epoch exactly once
            and none reads rows another reads. Every shard yields the same number of
            batches (the smallest share's) so that synchronous workers stay in step; the
            surplus batches of the larger shares (less than one chunk) are skipped that
            epoch. Unless ``chunk_rows`` is given, chunks are made small enough for about four
            per shard. Not with ``service`` (the service shares out chunks itself); a cache holds
            only this shard's rows, so ``cache`` is ignored.

    Returns:
        A ``tf.data.Dataset``; ``len(ds)`` is the number of batches per epoch.

    Raises:
        DataError: Bad specs, files, keys, shapes, dtypes, rates or options.
    """
    return Pipeline(
        specs, batch_size=batch_size, transform=transform, mix=mix, epoch=epoch, shuffle=shuffle,
        chunk_rows=chunk_rows, cache=cache, memory_budget=memory_budget, num_readers=num_readers, block_rows=block_rows,
        seed=seed, deterministic=deterministic, with_record_id=with_record_id,
        on_nonfinite=on_nonfinite, drop_remainder=drop_remainder, prefetch=prefetch, service=service,
        service_compression=service_compression, shard=shard,
    ).dataset


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset``), not the machine's count."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_options(*, batch_size, transform, mix, epoch, shuffle, chunk_rows, cache, memory_budget, num_readers,
                   block_rows, seed, deterministic, with_record_id, on_nonfinite, drop_remainder, prefetch,
                   service, service_compression) -> None:
    """Every option of :func:`make_dataset` checked up front: a :class:`DataError` in the house style."""
    def positive(name, v, *, optional=True):
        if (v is None and optional) or (_is_int(v) and v > 0):
            return
        raise DataError(f"{name} must be {'None or ' if optional else ''}a positive int. Received: {name}={v!r}")

    positive("batch_size", batch_size, optional=False)
    positive("chunk_rows", chunk_rows)
    positive("num_readers", num_readers)
    positive("block_rows", block_rows)
    if transform is not None and not callable(transform):
        raise DataError(f"transform must be None or a callable on a dict of tensors. Received: transform={transform!r}")
    if mix not in MIX_MODES:
        raise DataError(f"mix must be one of {MIX_MODES}. Received: mix={mix!r}")
    if not (epoch in EPOCH_MODES or (_is_int(epoch) and epoch > 0)):
        raise DataError(f"epoch must be one of {EPOCH_MODES} or a positive int. Received: epoch={epoch!r}")
    if not _is_int(shuffle) or shuffle < 0:
        raise DataError(f"shuffle must be an int ≥ 0 (rows). Received: shuffle={shuffle!r}")
    if memory_budget is not None and (not _is_int(memory_budget) or memory_budget < 0):
        raise DataError(f"memory_budget must be None or an int ≥ 0 (bytes). Received: memory_budget={memory_budget!r}")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise DataError(f"seed must be None or an int in [0, 2**63). Received: seed={seed!r}")
    for name, v in (("deterministic", deterministic), ("with_record_id", with_record_id)):
        if not isinstance(v, (bool, np.bool_)):
            raise DataError(f"{name} must be True or False. Received: {name}={v!r}")
    if drop_remainder is not None and not isinstance(drop_remainder, (bool, np.bool_)):
        raise DataError(f"drop_remainder must be None, True or False. Received: drop_remainder={drop_remainder!r}")
    if not (prefetch == tf.data.AUTOTUNE or (_is_int(prefetch) and prefetch >= 0)):
        raise DataError(f"prefetch must be an int ≥ 0 or tf.data.AUTOTUNE. Received: prefetch={prefetch!r}")
    if on_nonfinite not in ("error", "drop"):
        raise DataError(f"on_nonfinite must be 'error' or 'drop'. Received: on_nonfinite={on_nonfinite!r}")
    if drop_remainder is False and epoch != "all":
        raise DataError(
            "Mixed epochs always yield full batches; drop_remainder=False needs epoch='all'. "
            f"Received: epoch={epoch!r}, drop_remainder=False"
        )
    if not (cache is None or cache is False or (isinstance(cache, (str, os.PathLike)) and os.fspath(cache) != "")):
        raise DataError(f"cache must be None, 'memory', 'auto' or a directory. Received: cache={cache!r}")
    if service is not None and (not isinstance(service, str) or not service):
        raise DataError(f"service must be None or the address of a tf.data service dispatcher, grpc://host:port. "
                        f"Received: service={service!r}")
    if service_compression not in (None, "AUTO"):
        raise DataError(f"service_compression must be None or 'AUTO'. Received: service_compression={service_compression!r}")


def _block_rows(layouts, raw_row_bytes: int) -> int:
    """Rows per block: ~4 MB, rounded up to whole clusters of sources that decode clusters at once
    (ROOT baskets, Parquet row groups), so that a block does not decode a cluster another block decodes again."""
    rows = int(np.clip(_BLOCK_BYTES // raw_row_bytes, 64, 1 << 16))
    clusters = [lay.source.preferred_block_rows for lay in layouts
                if lay.source is not None and lay.source.preferred_block_rows]
    if clusters:
        c = max(clusters)
        rows = -(-rows // c) * c
    return rows


class Pipeline:
    """The objects behind :func:`make_dataset`: layouts, planner, reader, cache.

    Takes the same arguments as :func:`make_dataset`. Most users call
    :func:`make_dataset`; tests and tools use the attributes (``dataset``,
    ``layouts``, ``planner``, ``reader``, ``cache``) to check what a pipeline does.
    """

    def __init__(self, specs, *, batch_size=256, transform=None, mix="exact", epoch="shortest",
                 shuffle=10_000, chunk_rows=None, cache=None, memory_budget=None, num_readers=None,
                 block_rows=None, seed=None, deterministic=True, with_record_id=False,
                 on_nonfinite="error", drop_remainder=None, prefetch=2, service=None, service_compression=None,
                 shard=None) -> None:
        _check_options(batch_size=batch_size, transform=transform, mix=mix, epoch=epoch, shuffle=shuffle,
                       chunk_rows=chunk_rows, cache=cache, memory_budget=memory_budget, num_readers=num_readers,
                       block_rows=block_rows, seed=seed, deterministic=deterministic, with_record_id=with_record_id,
                       on_nonfinite=on_nonfinite, drop_remainder=drop_remainder, prefetch=prefetch, service=service,
                       service_compression=service_compression)
        self.service_compression = service_compression
        if drop_remainder is None:  # every record once with epoch="all"; full batches otherwise
            drop_remainder = epoch != "all"
        drop_remainder = bool(drop_remainder)
        seed = None if seed is None else int(seed)
        if shard is not None:
            if service is not None:
                raise DataError("shard= and service= exclude each other: the service shares out chunks itself. "
                                f"Received: shard={shard!r}, service={service!r}")
            cache = None
        if isinstance(specs, (str, os.PathLike)):
            specs = load_specs(specs)
        specs = list(specs)
        if not specs:
            raise DataError("make_dataset needs at least one SampleSpec. Received: specs=[]")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise DataError(f"Sample names must be unique. Received: names={names!r}")
        self.layouts = [inspect_sample(s, i, on_nonfinite=on_nonfinite) for i, s in enumerate(specs)]
        self.raw_spec = _common_features(self.layouts)
        self.label_table = _label_table(specs)
        self.transform = transform
        self.check_finite = on_nonfinite == "error"
        self.reader = BlockReader(self.layouts, check_finite=self.check_finite)
        raw_row_bytes = max(row_bytes(self.raw_spec), 1)
        self.block_rows = block_rows or _block_rows(self.layouts, raw_row_bytes)
        self.out_spec = self._trace_transform()

        user_chunks = chunk_rows is not None
        if chunk_rows is None:
            chunk_rows = min(max(shuffle, _CHUNK_BYTES // raw_row_bytes), max(_MAX_CHUNK_BYTES // raw_row_bytes, batch_size))

        def planner(batches_per_chunk: int) -> EpochPlanner:
            return EpochPlanner(self.layouts, batch_size=batch_size, mix=mix, epoch=epoch,
                                batches_per_chunk=batches_per_chunk, block_rows=self.block_rows,
                                shuffle=shuffle > 0, drop_remainder=drop_remainder)

        self.planner = planner(max(1, round(chunk_rows / batch_size)))
        if shard is not None and not user_chunks and isinstance(shard, (tuple, list)) and len(shard) == 2:
            # shards need several chunks each to come out nearly equal: about four per shard
            per_shard = max(1, self.planner.n_batches // (4 * max(int(shard[1]), 1)))
            if per_shard < self.planner.k:
                self.planner = planner(per_shard)
        if service is not None:
            check_portable(self.layouts, self.raw_spec, cache=cache)
        self.cache = self._make_cache(cache, memory_budget)
        self.batch_size = batch_size
        self._plans: OrderedDict[tuple[int, int], ChunkPlan] = OrderedDict()
        self._plans_lock = threading.Lock()
        self._gather = not (epoch == "all" and shuffle == 0)
        self.shard = shard
        self.n_batches = self.planner.n_batches if shard is None else self._shard_batches(shard)
        self.dataset = self._build(
            seed=seed, deterministic=deterministic, with_record_id=with_record_id,
            num_readers=num_readers or min(2, usable_cores()), prefetch=prefetch,
            drop_remainder=drop_remainder, service=service)

    # -- build-time helpers ---------------------------------------------------
    def _shard_batches(self, shard) -> int:
        """Batches per epoch of every shard: the smallest share of the epoch's chunks."""
        ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in shard) and 0 <= shard[0] < shard[1])
        if not ok:
            raise DataError(f"shard must be (index, count) with 0 ≤ index < count. Received: shard={shard!r}")
        count, p = shard[1], self.planner
        per_chunk = np.minimum(p.k, p.n_batches - np.arange(p.n_chunks) * p.k)
        shares = [int(per_chunk[i::count].sum()) for i in range(count)]
        if min(shares) == 0:
            raise DataError(
                f"An epoch of {p.n_batches} batches has {p.n_chunks} chunks of up to {p.k} batches, fewer than "
                f"the {count} shards: lower chunk_rows (or shuffle) so that every shard gets a chunk. "
                f"Received: shard={tuple(shard)}, chunk_rows={p.k * self.batch_size}")
        return min(shares)

    def _trace_transform(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Runs the transform once on two real rows of the first sample to learn its output rows."""
        feats = {k: v for k, v in self.raw_spec.items() if k != WEIGHT}
        if self.transform is None:
            return dict(self.raw_spec)
        lay = self.layouts[0]
        n = min(2, lay.n_rows)
        f = int(np.argmax(lay.counts > 0))
        sample = {k: np.empty((n,) + s, d) for k, (s, d) in self.raw_spec.items()}  # the reader fills weights too
        self.reader.read(0, f, 0, n, sample, 0)
        try:
            out = self.transform({k: tf.constant(sample[k]) for k in feats})
        except Exception as e:
            raise DataError(
                f"The transform failed on two rows of sample '{lay.spec.name}' with features "
                f"{ {k: (s, str(d)) for k, (s, d) in feats.items()} }. Received: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(out, Mapping) or not out:
            raise DataError(f"A transform must return a non-empty dict of tensors. Received: {type(out).__name__}")
        spec = {}
        for k, v in out.items():
            v = tf.convert_to_tensor(v)
            if v.shape.rank == 0 or v.shape[0] != n:
                raise DataError(
                    f"A transform must map rows to rows: output '{k}' should have {n} rows for {n} "
                    f"input rows. Received: shape={v.shape}"
                )
            spec[k] = (tuple(v.shape[1:]), np.dtype(v.dtype.as_numpy_dtype))
        if WEIGHT in self.raw_spec:
            spec[WEIGHT] = self.raw_spec[WEIGHT]
        return spec

    def _make_cache(self, cache, memory_budget) -> RowCache | None:
        if cache is None or cache is False:
            return None
        directory: str | None
        if cache == "memory":
            directory = None
        elif cache == "auto":
            need = row_bytes(self.out_spec) * sum(lay.n_rows for lay in self.layouts)
            budget = memory_budget if memory_budget is not None else psutil.virtual_memory().available // 2
            directory = None if need <= budget else default_cache_dir()
            log.info("cache='auto': %.1f MB of transformed rows, budget %.1f MB → %s", need / 1e6,
                     budget / 1e6, "memory" if directory is None else directory)
        else:
            directory = os.fspath(cache)
        fp = ""
        if directory is not None:  # a memory cache lives and dies with this pipeline: no fingerprint needed
            try:
                fp = fingerprint(self.layouts, self.transform,
                                 {"out_spec": {k: [list(s), str(d)] for k, (s, d) in self.out_spec.items()}})
            except DataError as e:
                if cache != "auto":
                    raise
                log.warning("cache='auto': the rows do not fit the memory budget and the transform cannot be "
                            "fingerprinted for a disk cache; streaming without a cache. %s", e)
                return None
        try:
            return RowCache(self.layouts, self.out_spec, fingerprint=fp, directory=directory)
        except DiskFullError as e:
            if cache != "auto":
                raise
            log.warning("cache='auto': the rows fit neither the memory budget nor the disk; streaming without a "
                        "cache. %s", e)
            return None

    # -- numpy side (runs in tf.data threads) --------------------------------
    def _plan(self, key: int, i: int) -> ChunkPlan:
        k = (int(key) & 0x7FFFFFFFFFFFFFFF, int(i))
        with self._plans_lock:
            plan = self._plans.get(k)
        if plan is None:
            plan = self.planner.chunk(*k)
            with self._plans_lock:
                self._plans[k] = plan
                while len(self._plans) > 64:
                    self._plans.popitem(last=False)
        return plan

    def _np_load(self, key, i):
        """Stage A (Python, h5py): the chunk's plan and its rows, raw or from the cache."""
        plan = self._plan(key, i)
        cached = self.cache is not None and all(
            self.cache.complete(s) for s in {seg[0] for seg in plan.segments})
        if cached:
            out = {k: aligned_empty((plan.n_rows,) + s, d) for k, (s, d) in self.out_spec.items()}
            try:
                dest = 0
                for sample, _, a, b, canon in plan.segments:
                    self.cache.read(sample, canon, canon + b - a, out, dest)
                    dest += b - a
                raw = {k: aligned_empty((0,) + s, d) for k, (s, d) in self.raw_spec.items()}
                return (np.bool_(True), plan.perm, plan.record_ids, *raw.values(), *out.values())
            except CacheCorruptError as e:  # moved aside: this chunk comes from the files, and fills a new cache
                log.warning("%s; reading these rows from the files instead.", e)
        n_raw, n_out = plan.n_rows, 0
        raw = {k: aligned_empty((n_raw,) + s, d) for k, (s, d) in self.raw_spec.items()}
        out = {k: aligned_empty((n_out,) + s, d) for k, (s, d) in self.out_spec.items()}
        dest = 0
        for sample, file, a, b, _ in plan.segments:
            if WEIGHT in raw and WEIGHT not in self.layouts[sample].features:
                raw[WEIGHT][dest:dest + b - a] = 1.0
            self.reader.read(sample, file, a, b, raw, dest)
            dest += b - a
        return (np.bool_(False), plan.perm, plan.record_ids, *raw.values(), *out.values())

    def _np_write(self, key, i, *values):
        plan = self._plan(key, i)
        dest = 0
        for sample, _, a, b, canon in plan.segments:
            self.cache.write(sample, canon, {k: v[dest:dest + b - a] for k, v in zip(self.out_spec, values)})
            dest += b - a
        return np.int64(0)

    # -- graph ----------------------------------------------------------------
    def _local_chunks(self, *, seed, num_readers, deterministic, with_record_id) -> tf.data.Dataset:
        """Chunks read in this process, in batch layout.

        Stage A (numpy, ``num_readers`` in parallel) reads a chunk's rows, or its transformed
        rows from the cache; stage B (TF ops, parallel) transforms rows read from the files,
        writes them to the cache, and shuffles the chunk into its batches.
        """
        raw_spec, out_spec = self.raw_spec, self.out_spec
        load_types = ([tf.bool, tf.int64, tf.int64] + [tf.as_dtype(d) for _, d in raw_spec.values()]
                      + [tf.as_dtype(d) for _, d in out_spec.values()])

        def load(key, i):
            cached, perm, ids, *arrays = tf.numpy_function(self._np_load, [key, i], load_types, stateful=False)
            return key, i, cached, perm, ids, tuple(arrays)

        def finish(key, i, cached, perm, ids, arrays):
            raw = _shaped(arrays[:len(raw_spec)], raw_spec)
            pre = _shaped(arrays[len(raw_spec):], out_spec)
            if self.cache is None:
                feats = self._from_files(key, i, raw)
            else:
                feats = tf.cond(tf.ensure_shape(cached, ()), lambda: pre, lambda: self._from_files(key, i, raw))
            return self._lay_out(feats, perm, ids, with_record_id=with_record_id)

        # A new epoch key for every iteration (epoch): reshuffled, yet reproducible for a seed.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        indices = tf.data.Dataset.range(self.planner.n_chunks)
        if self.shard is not None:
            indices = indices.shard(self.shard[1], self.shard[0])
        chunks = keys.flat_map(lambda key: indices.map(lambda i: (key, i)))
        loaded = chunks.map(load, num_parallel_calls=num_readers, deterministic=deterministic)
        return loaded.map(finish, num_parallel_calls=usable_cores(), deterministic=deterministic)

    def _service_chunks(self, *, seed, deterministic, with_record_id) -> tf.data.Dataset:
        """Chunks read by tf.data service workers, in batch layout.

        The service splits a plain range of chunks between its workers (each chunk read once
        per epoch). Workers must agree on the plan, so its key is fixed by the seed, and they
        cannot call back into this process, so chunks are read with TF ops only.
        """
        raw_spec = self.raw_spec

        def finish(raw, perm, ids):
            raw = {k: tf.ensure_shape(v, (None,) + s) for k, v in raw.items() for s in [raw_spec[k][0]]}
            if self.check_finite:
                raw = assert_finite_rows(raw, ids, self.layouts)
            return self._lay_out(self._transform_rows(raw), perm, ids, with_record_id=with_record_id)

        key = int(np.random.default_rng(seed).integers(0, 2**62))
        loaded = portable_chunks(self.layouts, self.planner, raw_spec, key)
        # the workers run this on their own cores: tf.data tunes the parallelism there
        return loaded.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def _transform_rows(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The transform applied to raw rows (the weight passes by), cast to the output dtypes."""
        feats = dict(raw)
        weight = feats.pop(WEIGHT, None)
        if self.transform is not None:
            feats = dict(self.transform(feats))
        if weight is not None:
            feats[WEIGHT] = weight
        return {k: tf.cast(feats[k], tf.as_dtype(self.out_spec[k][1])) for k in self.out_spec}

    def _from_files(self, key, i, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Transformed rows of chunk ``i``, written to the cache (when there is one) before they go on."""
        feats = self._transform_rows(raw)
        if self.cache is None:
            return feats
        done = tf.numpy_function(self._np_write, [key, i] + [feats[k] for k in self.out_spec],
                                 tf.int64, stateful=True)  # stateful: keeps its control edge
        with tf.control_dependencies([done]):
            return {k: tf.identity(v) for k, v in feats.items()}

    def _lay_out(self, feats: dict[str, tf.Tensor], perm, ids, *, with_record_id: bool):
        """``(features, label[, weight])`` of a chunk in shuffled batch order."""
        ids = tf.ensure_shape(ids, (None, 3))
        if self._gather:  # one gather both shuffles the chunk and lays out its batches
            perm = tf.ensure_shape(perm, (None,))
            feats = {k: tf.gather(v, perm) for k, v in feats.items()}
            ids = tf.gather(ids, perm)
        label = tf.gather(tf.constant(self.label_table), ids[:, 0])
        weight = feats.pop(WEIGHT, None)
        if with_record_id:
            feats[RECORD_ID] = ids
        if weight is not None:
            return feats, label, tf.reshape(tf.cast(weight, tf.float32), (-1,))
        return feats, label

    def _build(self, *, seed, deterministic, with_record_id, num_readers, prefetch, drop_remainder,
               service) -> tf.data.Dataset:
        if service is None:
            finished = self._local_chunks(seed=seed, num_readers=num_readers, deterministic=deterministic,
                                          with_record_id=with_record_id)
        else:
            finished = self._service_chunks(seed=seed, deterministic=deterministic, with_record_id=with_record_id)
        # Chunks hold whole batches (only the last chunk of epoch="all" may be short), so
        # rebatching never mixes rows of two chunks into one batch of a mixed epoch.
        ds = finished.rebatch(self.batch_size, drop_remainder=drop_remainder)
        if self.shard is not None:
            ds = ds.take(self.n_batches)
        if service is None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(self.n_batches))
        options = tf.data.Options()
        options.deterministic = deterministic
        options.experimental_optimization.map_parallelization = False  # keep plan/read order under our control
        ds = ds.with_options(options)
        if service is not None:
            ds = ds.apply(tf.data.experimental.service.distribute(
                processing_mode="distributed_epoch", service=service, compression=self.service_compression))
            # every chunk once per epoch: a known length, and a clear error if a worker lost batches
            ds = ds.apply(tf.data.experimental.assert_cardinality(self.n_batches))
        return ds.prefetch(prefetch)


def _shaped(values, spec) -> dict[str, tf.Tensor]:
    """Arrays from ``tf.numpy_function`` as named tensors with their known row shapes."""
    return {k: tf.ensure_shape(v, (None,) + s) for (k, (s, _)), v in zip(spec.items(), values)}


def _common_features(layouts: Sequence[SampleLayout]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    first = layouts[0]
    names = [k for k in first.features if k != WEIGHT]
    spec = {k: (first.features[k].row_shape, first.features[k].dtype) for k in names}
    for lay in layouts[1:]:
        other = [k for k in lay.features if k != WEIGHT]
        if sorted(other) != sorted(names):
            raise DataError(
                f"All samples must provide the same features: '{first.spec.name}' has {sorted(names)}, "
                f"'{lay.spec.name}' has {sorted(other)}. Received: keys={dict(lay.spec.keys)!r}"
            )
        for k in names:
            f = lay.features[k]
            if (f.row_shape, f.dtype) != spec[k]:
                raise DataError(
                    f"Feature '{k}' differs between samples: '{first.spec.name}' has rows of shape "
                    f"{spec[k][0]} and dtype {spec[k][1]}, '{lay.spec.name}' ({lay.files[0].path}, "
                    f"key '{f.path}') has {f.row_shape} {f.dtype}. Received: shape={f.row_shape}, dtype={f.dtype}"
                )
    if any(s.spec.weight_key for s in layouts):
        spec[WEIGHT] = ((), np.dtype(np.float32))
        for lay in layouts:
            if WEIGHT in lay.features and lay.features[WEIGHT].dtype.kind not in "fiu":
                raise DataError(f"Sample '{lay.spec.name}': weights must be numeric.")
    return spec


def _label_table(specs: Sequence[SampleSpec]) -> np.ndarray:
    vector = [isinstance(s.label, tuple) for s in specs]
    if all(vector):
        lengths = {len(s.label) for s in specs}
        if len(lengths) != 1:
            raise DataError(
                "Vector labels must have the same length in every sample. "
                f"Received: labels={ {s.name: s.label for s in specs} }"
            )
        return np.array([s.label for s in specs], np.float32)
    if any(vector):
        raise DataError(
            "Labels must be all ints or all vectors. "
            f"Received: labels={ {s.name: s.label for s in specs} }"
        )
    return np.array([s.label for s in specs], np.int32)
