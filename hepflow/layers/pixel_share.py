"""A predicted share of one image channel, pixel by pixel."""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["PixelShare"]


@keras.saving.register_keras_serializable(package="hepflow")
class PixelShare(keras.layers.Layer):
    """``sigmoid(logits) · image[..., channel]``: ``[(batch, h, w, 1), (batch, h, w, c)]`` → ``(batch, h, w, 1)``.

    The output never exceeds what the chosen channel holds and is zero where it is empty (PUMML:
    the leading-vertex share of each pixel's neutral pT).

    Args:
        channel: The image channel to share out (default 2).
    """

    def __init__(self, *, channel: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel

    def call(self, inputs):
        logits, image = inputs
        return ops.sigmoid(logits) * image[..., self.channel:self.channel + 1]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channel": self.channel}
