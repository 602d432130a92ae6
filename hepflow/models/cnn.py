"""Jet-image CNNs: the DeepTop minimal CNN and the improved CNN of Macaluso & Shih.

* DeepTop (Kasieczka, Plehn, Russell, Schell, arXiv:1701.08784): 8C4-8C4-MP2-8C4-8C4-64N-64N-64N.
* Macaluso & Shih (arXiv:1803.00107): 128C4-64C4-MP2-64C4-64C4-MP2-64N-256N-256N.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["jet_cnn", "deeptop_cnn", "macaluso_shih_cnn"]


def _head(h, num_classes: int):
    if num_classes == 1:
        return keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    return keras.layers.Dense(num_classes, activation="softmax", name="score")(h)


def jet_cnn(*, input_shape: tuple[int, int, int] = (37, 37, 1),
            conv_blocks: Sequence[Sequence[int]] = ((8, 8), (8, 8)), pool_after: Sequence[bool] = (True, False),
            kernel_size: int = 4, pool_size: int = 2, dense: Sequence[int] = (64, 64, 64), dropout: float = 0.0,
            features: Sequence[str] = (), num_classes: int = 1, name: str = "jet_cnn") -> keras.Model:
    """A CNN on jet images ``(batch, npix, npix, channels)`` read from the feature ``image``.

    With ``features``, scalar jet features (e.g. ``mass``, ``tau32`` from the
    ``high_level_features`` transform) join the flattened image features, batch-normalized,
    before the dense layers.

    Args:
        input_shape: Image shape.
        conv_blocks: Filters of the convolutions in each block (ReLU, "same" padding).
        pool_after: Whether a max-pool follows each block.
        kernel_size: Convolution kernel size.
        pool_size: Max-pool size.
        dense: Widths of the dense layers (ReLU).
        dropout: Dropout rate after each dense layer.
        features: Names of scalar features joined before the dense layers. Default none.
        num_classes: 1 → one sigmoid score (binary labels), else softmax.
        name: Model name.
    """
    if len(conv_blocks) != len(pool_after):
        raise ValueError(f"conv_blocks and pool_after must have the same length. Received: {conv_blocks}, {pool_after}")
    inputs = keras.Input(input_shape, name="image")
    h = inputs
    for block, pool in zip(conv_blocks, pool_after):
        for filters in block:
            h = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu")(h)
        if pool:
            h = keras.layers.MaxPooling2D(pool_size)(h)
    h = keras.layers.Flatten()(h)
    scalars = {f: keras.Input((), name=f) for f in features}
    if scalars:
        joined = keras.layers.Concatenate()([keras.layers.Reshape((1,))(scalars[f]) for f in features])
        h = keras.layers.Concatenate()([h, keras.layers.BatchNormalization(synchronized=True)(joined)])
    for width in dense:
        h = keras.layers.Dense(width, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    return keras.Model({"image": inputs, **scalars}, _head(h, num_classes), name=name)


def deeptop_cnn(*, input_shape: tuple[int, int, int] = (40, 40, 1), features: Sequence[str] = (),
                num_classes: int = 1) -> keras.Model:
    """The DeepTop minimal CNN: 8C4-8C4-MP2-8C4-8C4-64N-64N-64N (40 × 40 images in the paper).

    ``features``: scalar jet features joined before the dense layers (see :func:`jet_cnn`).
    """
    return jet_cnn(input_shape=input_shape, conv_blocks=((8, 8), (8, 8)), pool_after=(True, False),
                   dense=(64, 64, 64), features=features, num_classes=num_classes, name="deeptop_cnn")


def macaluso_shih_cnn(*, input_shape: tuple[int, int, int] = (37, 37, 1), num_classes: int = 1,
                      dropout: float = 0.0) -> keras.Model:
    """Macaluso & Shih's CNN: 128C4-64C4-MP2-64C4-64C4-MP2-64N-256N-256N (37 × 37 images)."""
    return jet_cnn(input_shape=input_shape, conv_blocks=((128, 64), (64, 64)), pool_after=(True, True),
                   dense=(64, 256, 256), dropout=dropout, num_classes=num_classes, name="macaluso_shih_cnn")
