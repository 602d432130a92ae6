"""Sample sources other than plain HDF5 datasets: ROOT TTrees, Parquet, the published
top-tagging files and prepared tfds datasets.

Each source turns the files of one :class:`~hepflow.data.SampleSpec` into rows of fixed-size
numpy features, so the rest of the pipeline (planning, record ids, mixing, the cache) treats
them exactly like HDF5 datasets. A source is inspected once when the pipeline is built
(:func:`inspect_source`) and then read in ``tf.data`` worker threads, each with its own open
file handles (:meth:`FileSource.open`).
"""
from __future__ import annotations

from hepflow.data.sources.base import FileSource, inspect_source, source_for

__all__ = ["FileSource", "inspect_source", "source_for"]
