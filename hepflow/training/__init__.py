"""Training: ``train`` (a config in, a run directory out) under any tf.distribute strategy.

``train`` is loaded on first use, so that :mod:`hepflow.training.offload_fit` runs on machines
without TensorFlow.
"""
from __future__ import annotations

__all__ = ["train"]


def __getattr__(name: str):
    if name == "train":
        from hepflow.training.trainer import train  # start-up: keeps offload_fit free of TensorFlow

        return train
    raise AttributeError(f"module 'hepflow.training' has no attribute {name!r}")
