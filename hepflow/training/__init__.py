"""Training: ``train`` (a config in, a run directory out) under any tf.distribute strategy."""
from __future__ import annotations

from hepflow.training.train import train

__all__ = ["train"]
