"""tfds entry point: `tfds build datasets/jet_classes --config jets5`.

The `tfds` command line looks for a builder class defined in this very module, so the builder
of :mod:`hepflow.datasets.jet_classes` is subclassed here rather than only imported.
"""
from __future__ import annotations

from hepflow.datasets import jet_classes
from hepflow.datasets.jet_classes import JetClassesConfig  # noqa: F401


class Builder(jet_classes.Builder):
    """The ``jet_classes`` dataset (see :mod:`hepflow.datasets.jet_classes`)."""
