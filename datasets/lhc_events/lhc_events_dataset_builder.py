"""tfds entry point: `tfds build datasets/lhc_events --config cocktail`.

The `tfds` command line looks for a builder class defined in this very module, so the builder
of :mod:`hepflow.datasets.lhc_events` is subclassed here rather than only imported.
"""
from __future__ import annotations

from hepflow.datasets import lhc_events
from hepflow.datasets.lhc_events import LhcEventsConfig  # noqa: F401


class Builder(lhc_events.Builder):
    """The ``lhc_events`` dataset (see :mod:`hepflow.datasets.lhc_events`)."""
