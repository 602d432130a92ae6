"""A prepared tfds dataset's split as a sample source (the ``[tfds]`` extra).

The split's shard files are the sample's files, so record ids, file-level splits and cache
fingerprints work as for HDF5. Records are found through an index of their byte offsets
(TFRecord shards, built once per file when the pipeline is built) or by position
(ArrayRecord shards) and parsed in batches with ``tf.io.parse_example``. Readable features:
``Tensor``, ``Scalar`` and ``ClassLabel`` (fixed shapes, numeric dtypes).
"""
from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np
import tensorflow as tf

from hepflow.data.samples import SampleSpec
from hepflow.data.sources.base import FileSource
from hepflow.errors import DataError

__all__ = ["TfdsSource", "split_files", "load_builder"]

_HEADER = struct.Struct("<Q")


def _tfds():
    try:
        import tensorflow_datasets as tfds  # optional extra [tfds]
    except ImportError as e:
        raise ImportError(f"Reading tfds samples needs tensorflow-datasets: pip install -e '.[tfds]'. "
                          f"Missing: {e.name}") from None
    import hepflow.datasets  # noqa: F401 -- optional extra [tfds]: registers hepflow's builders (top_tagging, calo_showers)
    return tfds


def load_builder(spec: SampleSpec):
    """The tfds builder of a sample, checked to be prepared and to have the sample's split."""
    tfds = _tfds()
    try:
        builder = tfds.builder(spec.tfds, data_dir=spec.data_dir)
    except Exception as e:  # DatasetNotFoundError, ValueError for an unknown config, ...
        raise DataError(f"Sample '{spec.name}': tfds has no dataset '{spec.tfds}'. Received: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not builder.is_prepared():
        raise DataError(f"Sample '{spec.name}': tfds dataset '{spec.tfds}' is not prepared in {builder.data_dir}; "
                        f"build it first (e.g. hepflow datasets build {spec.tfds.split('/')[0]} --config "
                        f"{builder.builder_config.name if builder.builder_config else 'NAME'}). "
                        f"Received: data_dir={spec.data_dir!r}")
    if spec.split not in builder.info.splits:
        raise DataError(f"Sample '{spec.name}': tfds dataset '{spec.tfds}' has no split '{spec.split}'; available: "
                        f"{sorted(builder.info.splits)}. Received: split={spec.split!r}")
    return builder


def split_files(spec: SampleSpec) -> list[str]:
    """The shard files of the sample's split, in order."""
    builder = load_builder(spec)
    info = builder.info.splits[spec.split]
    return [os.path.join(builder.data_dir, f) for f in info.filenames]


class _TfrecordHandle:
    def __init__(self, path: str, offsets: np.ndarray) -> None:
        self.fd, self.offsets = os.open(path, os.O_RDONLY), offsets

    def records(self, start: int, stop: int) -> list[bytes]:
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        buf = os.pread(self.fd, b - a, a)
        if len(buf) != b - a:
            raise DataError(f"a TFRecord shard ends early: expected {b - a} bytes at offset {a}. Received: {len(buf)}")
        view = memoryview(buf)
        rel = self.offsets[start:stop + 1] - a
        return [bytes(view[int(rel[i]) + 12:int(rel[i + 1]) - 4]) for i in range(stop - start)]

    def close(self) -> None:
        os.close(self.fd)


class _ArrayRecordHandle:
    def __init__(self, path: str) -> None:
        from array_record.python.array_record_module import ArrayRecordReader  # optional extra [tfds]: ArrayRecord shards
        self.reader = ArrayRecordReader(path)

    def records(self, start: int, stop: int) -> list[bytes]:
        return self.reader.read(list(range(start, stop)))

    def close(self) -> None:
        self.reader.close()


def tfrecord_offsets(path: str) -> np.ndarray:
    """Byte offsets of every record of a TFRecord file, and the file's size at the end."""
    size = os.path.getsize(path)
    out = [0]
    with open(path, "rb") as f:
        while out[-1] < size:
            f.seek(out[-1])
            head = f.read(8)
            if len(head) < 8:
                raise DataError(f"{path}: a TFRecord header is cut at offset {out[-1]}; is the file truncated? "
                                f"Received: {len(head)} of 8 bytes")
            out.append(out[-1] + 16 + _HEADER.unpack(head)[0])
    if out[-1] != size:
        raise DataError(f"{path}: the last TFRecord runs past the end of the file; is it truncated? "
                        f"Received: file size {size}, records end at {out[-1]}")
    return np.asarray(out, np.int64)


class TfdsSource(FileSource):
    """Reads the shards of one tfds split."""

    format = "tfds"

    def __init__(self, spec: SampleSpec) -> None:
        super().__init__(spec)
        builder = load_builder(spec)
        self.features = builder.info.features
        self.file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format) or "tfrecord")
        self.n_per_file = dict(zip(split_files(spec), builder.info.splits[spec.split].shard_lengths))
        self._offsets: dict[str, np.ndarray] = {}
        self._parse_spec: dict[str, tf.io.FixedLenFeature] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        for name, key in spec.keys.items():
            self._add(name, key)

    def _add(self, name: str, key: str) -> None:
        spec = self.spec
        if key not in self.features:
            raise DataError(f"Sample '{spec.name}': tfds dataset '{spec.tfds}' has no feature '{key}'; available: "
                            f"{sorted(self.features)}. Received: {name}={key!r}")
        feature = self.features[key]
        info = feature.get_serialized_info()
        shape = tuple(getattr(feature, "shape", ()) or ())
        np_dtype = np.dtype(getattr(feature, "np_dtype", None) or feature.dtype.as_numpy_dtype)
        if (not hasattr(info, "shape") or any(s is None for s in info.shape) or np_dtype.kind not in "biuf"
                or tuple(info.shape) != shape):
            raise DataError(f"Sample '{spec.name}': tfds feature '{key}' ({type(feature).__name__}) is not a fixed-size "
                            f"numeric tensor; hepflow reads Tensor, Scalar and ClassLabel features. "
                            f"Received: shape={shape}, dtype={np_dtype}")
        wire = tf.as_dtype(getattr(info, "np_dtype", None) or info.dtype)
        wire = tf.float32 if wire.is_floating else tf.int64
        self._parse_spec[key] = tf.io.FixedLenFeature(shape, wire)
        self._dtypes[name], self._shapes[name] = np_dtype, shape

    def open(self, path: str) -> Any:
        if self.file_format == "array_record":
            return _ArrayRecordHandle(path)
        offsets = self._offsets.get(path)
        if offsets is None:
            offsets = self._offsets[path] = tfrecord_offsets(path)
        return _TfrecordHandle(path, offsets)

    def describe(self, handle: Any, path: str):
        n = self.n_per_file[path]
        if isinstance(handle, _TfrecordHandle) and len(handle.offsets) - 1 != n:
            raise DataError(f"Sample '{self.spec.name}': {path} holds {len(handle.offsets) - 1} records but the "
                            f"dataset info says {n}; rebuild the tfds dataset. Received: a changed shard")
        return n, {name: (self._shapes[name], self._dtypes[name]) for name in self.spec.keys}

    def read(self, handle: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        parsed = tf.io.parse_example(tf.constant(handle.records(start, stop)), self._parse_spec)
        return {name: parsed[key].numpy().astype(self._dtypes[name], copy=False)
                for name, key in self.spec.keys.items()}

    def column(self, handle: Any, path: str, name: str, n_rows: int) -> np.ndarray:
        key = self.spec.keys.get(name, name)
        if name not in self.spec.keys:
            self._add(name, key)
        if self._shapes[name] not in ((), (1,)):
            raise DataError(f"Sample '{self.spec.name}': selection variable '{name}' is not one number per example. "
                            f"Received: shape={self._shapes[name]}")
        out = np.empty(n_rows, self._dtypes[name])
        spec = {key: self._parse_spec[key]}
        for a in range(0, n_rows, 8192):
            b = min(a + 8192, n_rows)
            out[a:b] = tf.io.parse_example(tf.constant(handle.records(a, b)), spec)[key].numpy().reshape(b - a)
        return out
