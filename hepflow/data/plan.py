"""Epoch planning: which rows of which files form each chunk of batches.

A pipeline reads *chunks*: ``K`` batches' worth of rows at once, so that every
per-call cost (a Python call, an HDF5 read, a TF op) is paid per chunk rather
than per row. Each sample is cut into *blocks* of contiguous rows (never
straddling files). In an epoch, each sample's rows are streamed block by block in
an order reshuffled for every pass over the sample; the chunk takes the next
rows of every sample, and one permutation then both shuffles the rows within
the chunk and lays them out as batches with the requested class composition.

Everything here is numpy and depends only on ``(epoch key, chunk index)``, so
plans are deterministic for a seed and can be recomputed by any worker thread.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from hepflow.errors import DataError
from hepflow.data.readers import SampleLayout

__all__ = ["MIX_MODES", "EPOCH_MODES", "exact_counts", "Stream", "ChunkPlan", "EpochPlanner"]

MIX_MODES = ("exact", "sampled")
EPOCH_MODES = ("shortest", "longest", "all")


def exact_counts(rates: Sequence[float], batch_size: int) -> np.ndarray:
    """Rows per batch for each sample, proportional to ``rates`` (largest remainder).

    ``exact_counts([1, 3], 256)`` is ``[64, 192]``.
    """
    r = np.asarray(rates, np.float64)
    ideal = r / r.sum() * batch_size
    counts = np.floor(ideal).astype(np.int64)
    rest = batch_size - counts.sum()
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


@dataclasses.dataclass
class Stream:
    """Blocks of rows that are streamed pass after pass in a per-pass shuffled order.

    One stream per sample, or one stream over all samples for ``epoch="all"``.
    Block columns: sample, file, start and stop (in the file's selected-row
    space), and the block's first row in its sample's canonical row order.
    """

    sample: np.ndarray
    file: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    canon: np.ndarray

    @property
    def n_rows(self) -> int:
        return int((self.stop - self.start).sum())

    @classmethod
    def of(cls, layouts: Sequence[SampleLayout], block_rows: int) -> "Stream":
        cols: list[list[int]] = [[], [], [], [], []]
        for lay in layouts:
            for f, (count, offset) in enumerate(zip(lay.counts, lay.offsets)):
                for a in range(0, int(count), block_rows):
                    b = min(a + block_rows, int(count))
                    for col, v in zip(cols, (lay.index, f, a, b, int(offset) + a)):
                        col.append(v)
        return cls(*(np.asarray(c, np.int64) for c in cols))


@dataclasses.dataclass
class ChunkPlan:
    """What one chunk reads and how its rows become batches.

    Attributes:
        segments: ``(sample, file, start, stop, canon)`` row ranges, read in
            order into consecutive rows of the chunk's staging buffers.
        n_rows: Rows in the chunk.
        perm: Output row ``j`` is staging row ``perm[j]``; consecutive runs of
            ``batch_size`` output rows are the batches.
        record_ids: ``(sample, file, row in file)`` for every staging row.
    """

    segments: list[tuple[int, int, int, int, int]]
    n_rows: int
    perm: np.ndarray
    record_ids: np.ndarray


class EpochPlanner:
    """Plans every chunk of an epoch from the epoch key and the chunk index.

    Args:
        layouts: Validated samples.
        batch_size: Rows per batch.
        mix: ``"exact"`` — every batch holds ``exact_counts(rates)`` rows of each
            sample; ``"sampled"`` — every row is drawn from sample ``i`` with
            probability ``rate_i / sum(rates)``.
        epoch: ``"shortest"`` — the epoch ends when the first sample runs out
            (larger samples contribute a fresh random subset of blocks each
            epoch); ``"longest"`` — it ends when the largest runs out, smaller
            samples repeat (reshuffled on each pass); an int — that many batches,
            every sample repeating as needed; ``"all"`` — every row of every
            sample exactly once, rates ignored, the last batch possibly short.
        batches_per_chunk: Batches read together (the shuffle window).
        block_rows: Contiguous rows per block (the unit of the global shuffle).
        shuffle: Shuffle block order each pass and rows within each chunk.
        drop_remainder: With ``epoch="all"``, drop the last, short batch.
    """

    def __init__(self, layouts: Sequence[SampleLayout], *, batch_size: int, mix: str,
                 epoch: str | int, batches_per_chunk: int, block_rows: int, shuffle: bool,
                 drop_remainder: bool) -> None:
        self.layouts = list(layouts)
        self.batch_size = batch_size
        self.mix = mix
        self.epoch = epoch
        self.k = batches_per_chunk
        self.shuffle = shuffle
        rates = np.array([lay.spec.rate for lay in layouts], np.float64)
        sizes = np.array([lay.n_rows for lay in layouts], np.int64)
        if epoch == "all":
            self.streams = [Stream.of(self.layouts, block_rows)]
            total = int(sizes.sum())
            self.n_batches = total // batch_size if drop_remainder else math.ceil(total / batch_size)
            self.n_rows_epoch = self.n_batches * batch_size if drop_remainder else total
            self.counts = None
        else:
            self.streams = [Stream.of([lay], block_rows) for lay in self.layouts]
            if mix == "exact":
                self.counts = exact_counts(rates, batch_size)
                if (self.counts == 0).any():
                    zero = [lay.spec.name for lay, c in zip(layouts, self.counts) if c == 0]
                    raise DataError(
                        f"With mix='exact' and batch_size={batch_size}, samples {zero} get 0 rows per "
                        "batch; raise batch_size or use mix='sampled'. "
                        f"Received: rates={rates.tolist()}"
                    )
                per_sample = sizes // self.counts
            else:
                self.counts = None
                per_sample = np.floor(sizes / (rates / rates.sum()) / batch_size).astype(np.int64)
            if isinstance(epoch, int):
                self.n_batches = epoch
            else:
                self.n_batches = int(per_sample.min() if epoch == "shortest" else per_sample.max())
            self.n_rows_epoch = self.n_batches * batch_size
        if self.n_batches <= 0:
            raise DataError(
                f"The samples are too small for one batch of {batch_size} rows with epoch={epoch!r}. "
                f"Received: rows per sample={dict(zip([l.spec.name for l in layouts], sizes.tolist()))}"
            )
        self.n_chunks = math.ceil(self.n_batches / self.k)
        self._lock = threading.Lock()
        self._orders: OrderedDict = OrderedDict()
        self._sampled: OrderedDict = OrderedDict()

    # -- streams ------------------------------------------------------------
    def _pass_order(self, key: int, s: int, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Block order and cumulative row ends for pass ``p`` of stream ``s``."""
        with self._lock:
            hit = self._orders.get((key, s, p))
            if hit is not None:
                self._orders.move_to_end((key, s, p))
                return hit
        st = self.streams[s]
        n = len(st.start)
        order = (np.random.default_rng([key, 1, s, p]).permutation(n) if self.shuffle
                 else np.arange(n))
        ends = np.cumsum((st.stop - st.start)[order])
        with self._lock:
            self._orders[(key, s, p)] = (order, ends)
            while len(self._orders) > 4 * len(self.streams) + 8:
                self._orders.popitem(last=False)
        return order, ends

    def _segments(self, key: int, s: int, begin: int, end: int, out: list) -> None:
        st = self.streams[s]
        total = st.n_rows
        pos = begin
        while pos < end:
            p, off = divmod(pos, total)
            order, ends = self._pass_order(key, s, p)
            j = int(np.searchsorted(ends, off, side="right"))
            while j < len(order) and pos < end:
                b = order[j]
                block_begin = int(ends[j] - (st.stop[b] - st.start[b]))
                a = int(st.start[b]) + (off - block_begin)
                n = min(int(st.stop[b]) - a, end - pos)
                out.append((int(st.sample[b]), int(st.file[b]), a, a + n,
                            int(st.canon[b]) + (a - int(st.start[b]))))
                pos += n
                off += n
                j += 1

    # -- chunks -------------------------------------------------------------
    def _sampled_offsets(self, key: int) -> np.ndarray:
        with self._lock:
            hit = self._sampled.get(key)
        if hit is None:
            rates = np.array([lay.spec.rate for lay in self.layouts], np.float64)
            rng = np.random.default_rng([key, 2])
            rows = np.full(self.n_chunks, self.k * self.batch_size, np.int64)
            rows[-1] = (self.n_batches - (self.n_chunks - 1) * self.k) * self.batch_size
            counts = np.stack([rng.multinomial(r, rates / rates.sum()) for r in rows])
            hit = np.concatenate([np.zeros((1, len(rates)), np.int64), np.cumsum(counts, axis=0)])
            with self._lock:
                self._sampled[key] = hit
                while len(self._sampled) > 4:
                    self._sampled.popitem(last=False)
        return hit

    def chunk(self, key: int, i: int) -> ChunkPlan:
        """The plan of chunk ``i`` of the epoch identified by ``key``."""
        rng = np.random.default_rng([key, 3, i])
        first_batch = i * self.k
        nb = min(self.k, self.n_batches - first_batch)
        segments: list = []
        if self.epoch == "all":
            begin = first_batch * self.batch_size
            end = min(begin + nb * self.batch_size, self.n_rows_epoch)
            self._segments(key, 0, begin, end, segments)
            n = end - begin
            perm = rng.permutation(n) if self.shuffle else np.arange(n)
        elif self.mix == "exact":
            parts, off = [], 0
            for s, c in enumerate(self.counts):
                n_s = nb * int(c)
                self._segments(key, s, first_batch * int(c), first_batch * int(c) + n_s, segments)
                local = rng.permutation(n_s) if self.shuffle else np.arange(n_s)
                parts.append((local + off).reshape(nb, int(c)))
                off += n_s
            layout = np.concatenate(parts, axis=1)
            if self.shuffle:
                layout = np.take_along_axis(layout, np.argsort(rng.random(layout.shape), axis=1), axis=1)
            perm, n = layout.reshape(-1), off
        else:
            offsets = self._sampled_offsets(key)
            for s in range(len(self.layouts)):
                self._segments(key, s, int(offsets[i, s]), int(offsets[i + 1, s]), segments)
            n = int((offsets[i + 1] - offsets[i]).sum())
            perm = rng.permutation(n)
        ids = np.empty((n, 3), np.int64)
        pos = 0
        for sample, file, a, b, _ in segments:
            sel = self.layouts[sample].rows[file]
            ids[pos:pos + b - a, 0] = sample
            ids[pos:pos + b - a, 1] = file
            ids[pos:pos + b - a, 2] = np.arange(a, b) if sel is None else sel[a:b]
            pos += b - a
        return ChunkPlan(segments=segments, n_rows=n, perm=perm.astype(np.int64), record_ids=ids)
