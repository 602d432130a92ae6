"""PUMML: pileup mitigation with machine learning (Komiske, Metodiev, Nachman, Schwartz, arXiv:1707.08600).

A fully convolutional network reads a jet's images of leading-vertex tracks, pileup tracks and
all neutral deposits (:func:`hepflow.ops.pileup.pumml_images`) and predicts the leading-vertex
neutral pT of every pixel. As in the paper the network is local (each output pixel sees a
neighbourhood of the inputs, not the whole jet); hepflow's output is a share of the pixel's
neutral pT (:class:`~hepflow.layers.PixelShare`), so it is never negative and never more than
was deposited.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

from hepflow.layers.pixel_share import PixelShare

__all__ = ["pumml"]


def pumml(*, input_shape: tuple[int, int, int] = (32, 32, 3), filters: Sequence[int] = (16, 16, 16),
          kernel_size: int = 5, name: str = "pumml") -> keras.Model:
    """The PUMML network: feature ``image`` (charged LV, charged PU, neutral) → ``(batch, h, w, 1)``.

    Args:
        input_shape: Image shape; channel 2 holds the neutral pT.
        filters: Filters of each "same"-padded ReLU convolution (default three of 16).
        kernel_size: Their kernel size (default 5: with three layers each output pixel sees 13 × 13).
        name: Model name.
    """
    image = keras.Input(input_shape, name="image")
    h = image
    for n in filters:
        h = keras.layers.Conv2D(n, kernel_size, padding="same", activation="relu")(h)
    logits = keras.layers.Conv2D(1, 1, name="logits")(h)
    return keras.Model(image, PixelShare(channel=2, name="neutral_lv")([logits, image]), name=name)
