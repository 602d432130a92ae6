"""Serving: SavedModel export with the training-time preprocessing inside, and batch prediction."""
from __future__ import annotations

from hepflow.serving.export import export
from hepflow.serving.from_run import export_ensemble, export_run
from hepflow.serving.generator import export_generator
from hepflow.serving.predict import predict_file

__all__ = ["export", "export_ensemble", "export_generator", "export_run", "predict_file"]
