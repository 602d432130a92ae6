"""Reconstruction as TF ops composed into a DAG (:class:`RecoGraph`), and the chains built from them."""
from hepflow.reco.graph import ProductSpec, RecoGraph, Step
from hepflow.reco.lartpc import lartpc_reco_graph

__all__ = ["GRAPHS", "ProductSpec", "RecoGraph", "Step", "lartpc_reco_graph"]

#: The graphs ``hepflow reco show`` and configs (the ``lartpc_reco`` transform) can name.
GRAPHS = {"lartpc": lartpc_reco_graph}
