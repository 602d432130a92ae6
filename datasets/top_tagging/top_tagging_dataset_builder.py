"""tfds entry point: `tfds build datasets/top_tagging --config generated`.

The `tfds` command line looks for a builder class defined in this very module, so the builder
of :mod:`hepflow.datasets.top_tagging` is subclassed here rather than only imported.
"""
from __future__ import annotations

from hepflow.datasets import top_tagging
from hepflow.datasets.top_tagging import TopTaggingConfig  # noqa: F401


class Builder(top_tagging.Builder):
    """The ``top_tagging`` dataset (see :mod:`hepflow.datasets.top_tagging`)."""
