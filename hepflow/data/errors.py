"""Errors raised by hepflow's data layer."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input to a data pipeline: missing or corrupt files, wrong keys, bad shapes.

    Messages name the file and the key involved, say what was expected and end
    with ``Received: ...`` as Keras errors do.
    """
