"""Reusable Keras layers, one per file."""
from __future__ import annotations

from hepflow.layers.edge_conv import EdgeConv
from hepflow.layers.masked_pooling import MaskedAverage, MaskedSum, WeightedSum
from hepflow.layers.message_passing import LearnedAdjacencyMessagePassing
from hepflow.layers.pixel_share import PixelShare
from hepflow.layers.recnn import GatedTreeEmbedding
from hepflow.layers.set_attention import ElementMask, MaskedSelfAttention
from hepflow.layers.spline_flows import ActNorm, SplineAutoregressive, SplineCoupling, rational_quadratic_spline
from hepflow.layers.tree_edge_conv import TreeEdgeConv, TreeNeighbours

__all__ = ["EdgeConv", "MaskedAverage", "MaskedSum", "WeightedSum", "GatedTreeEmbedding",
           "LearnedAdjacencyMessagePassing", "PixelShare", "ElementMask", "MaskedSelfAttention", "TreeEdgeConv", "TreeNeighbours",
           "ActNorm", "SplineAutoregressive", "SplineCoupling", "rational_quadratic_spline"]
