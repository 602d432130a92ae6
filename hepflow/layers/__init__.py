"""Reusable Keras layers, one per file."""
from __future__ import annotations

from hepflow.layers.edge_conv import EdgeConv
from hepflow.layers.masked_pooling import MaskedAverage, MaskedSum, WeightedSum

__all__ = ["EdgeConv", "MaskedAverage", "MaskedSum", "WeightedSum"]
