"""Reconstruction as TF ops composed into a DAG (:class:`RecoGraph`), and the chains built from them."""
from hepflow.reco.calo import calo_cluster_graph
from hepflow.reco.graph import ProductSpec, RecoGraph, Step
from hepflow.reco.lartpc import lartpc_reco, lartpc_reco_graph

__all__ = ["GRAPHS", "TRANSFORMS", "ProductSpec", "RecoGraph", "Step", "calo_cluster_graph", "lartpc_reco_graph"]

#: The graphs ``hepflow reco show`` can name.
GRAPHS = {"lartpc": lartpc_reco_graph, "calo_clusters": calo_cluster_graph}
#: The reconstruction transforms a training config can name (``transform: [{lartpc_reco: {outputs: [image]}}]``).
TRANSFORMS = {"lartpc_reco": lartpc_reco, "calo_clusters": calo_cluster_graph}
