"""Reconstruction as TF ops composed into a DAG (:class:`RecoGraph`), and the chains built from them."""
from hepflow.reco.graph import ProductSpec, RecoGraph, Step

__all__ = ["ProductSpec", "RecoGraph", "Step"]
