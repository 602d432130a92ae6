"""hepflow.data: tf.data pipelines declared by sample specifications.

Where data enters hepflow: :class:`SampleSpec` says which files, keys, label and
mixing rate; :func:`make_dataset` turns a list of them into a batched, mixed,
transformed, cached ``tf.data.Dataset``.
"""
from __future__ import annotations

from hepflow.errors import DataError
from hepflow.data.pipeline import RECORD_ID, make_dataset
from hepflow.data.samples import SampleSpec, load_specs, specs_from_dlkit
from hepflow.data.transforms import Compose, Normalize

__all__ = ["DataError", "SampleSpec", "load_specs", "specs_from_dlkit", "make_dataset", "RECORD_ID",
           "Normalize", "Compose"]
