"""tfds entry point: `tfds build datasets/calo_showers --config eplus`.

The `tfds` command line looks for a builder class defined in this very module, so the builder
of :mod:`hepflow.datasets.calo_showers` is subclassed here rather than only imported.
"""
from __future__ import annotations

from hepflow.datasets import calo_showers
from hepflow.datasets.calo_showers import CaloShowersConfig  # noqa: F401


class Builder(calo_showers.Builder):
    """The ``calo_showers`` dataset (see :mod:`hepflow.datasets.calo_showers`)."""
