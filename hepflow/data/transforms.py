"""Transforms: TF functions on dicts of batched tensors, with a ``get_config``.

A transform maps rows to rows: ``{"x": (batch, ...)}`` → ``{"x": (batch, ...), ...}``.
It runs inside the ``tf.data`` graph (and can be baked into an exported model).
Giving it ``get_config()`` lets a disk cache notice when its settings change.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from hepflow.data.cache import transform_config

__all__ = ["Normalize", "Compose"]


class Normalize:
    """``(x - offset) / scale`` per feature (broadcast over the last axis).

    Args:
        offsets: Feature name → offset (a number or a per-channel list).
        scales: Feature name → scale (a number or a per-channel list), non-zero.
    """

    def __init__(self, *, offsets: Mapping[str, float | Sequence[float]],
                 scales: Mapping[str, float | Sequence[float]]) -> None:
        self.offsets = {k: v for k, v in offsets.items()}
        self.scales = {k: v for k, v in scales.items()}
        for k, v in self.scales.items():
            if not np.all(np.isfinite(v)) or np.any(np.asarray(v, np.float64) == 0.0):
                raise ValueError(f"Normalize scale for '{k}' must be finite and non-zero. "
                                 f"Received: scales[{k!r}]={v!r}")
        self._offset = {k: np.asarray(self.offsets.get(k, 0.0), np.float32) for k in self._names()}
        self._inv_scale = {k: (1.0 / np.asarray(self.scales.get(k, 1.0), np.float64)).astype(np.float32)
                           for k in self._names()}

    def _names(self) -> list[str]:
        return sorted(set(self.offsets) | set(self.scales))

    def __call__(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(features)
        for k in self._names():
            if k not in out:
                raise KeyError(f"Normalize: no feature '{k}'. Received: features={sorted(out)}")
            out[k] = (tf.cast(out[k], tf.float32) - self._offset[k]) * self._inv_scale[k]
        return out

    def get_config(self) -> dict[str, Any]:
        return {"offsets": self.offsets, "scales": self.scales}


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for t in self.transforms:
            features = t(features)
        return dict(features)

    def get_config(self) -> dict[str, Any]:
        return {"transforms": [transform_config(t) for t in self.transforms]}
