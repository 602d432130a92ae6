"""hepflow: TensorFlow-native deep learning for high-energy physics.

Data enters through :mod:`hepflow.data` (sample specifications → ``tf.data``
pipelines); models live in :mod:`hepflow.models`; training, evaluation and
serving follow in their own subpackages.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
