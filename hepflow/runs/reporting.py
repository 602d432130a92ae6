"""How a caller plugs reports into training without training knowing them.

``hepflow.training.train`` takes a list of :class:`Reporter` objects: it asks each for Keras
callbacks before fitting and calls ``after_training`` once the model is saved. The reports
themselves (ROC curves, shower monitors) live in :mod:`hepflow.evaluation.reporters`; the
command line and the studies hand them in.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from hepflow.data import SampleSpec

__all__ = ["RunContext", "Reporter"]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a reporter sees of a run being trained.

    Attributes:
        config: The resolved config.
        splits: ``train`` / ``validation`` / ``test`` sample specs.
        transform: The pipeline transform (``None`` without one).
        model: The compiled Keras model.
        out_dir: Where this process writes the run's files (a scratch folder on non-chief workers).
        chief: Whether this process writes the run directory.
    """

    config: Mapping[str, Any]
    splits: Mapping[str, Sequence[SampleSpec]]
    transform: Any
    model: Any
    out_dir: str
    chief: bool


class Reporter:
    """A report made during or after training; override either hook (both do nothing here)."""

    def callbacks(self, run: RunContext) -> list[Any]:
        """Keras callbacks to add to the fit (called on every worker; report only where ``run.chief``)."""
        return []

    def after_training(self, run: RunContext) -> None:
        """Called on the chief once ``model.keras`` is saved, before ``summary.json`` is written."""
