"""A dense network on high-level jet features (mass, pT, τ21, τ32, ...)."""
from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["high_level_dnn"]


def high_level_dnn(*, features: Sequence[str] = ("mass", "pt", "tau21", "tau32"),
                   hidden: Sequence[int] = (64, 64, 64), dropout: float = 0.1, num_classes: int = 1) -> keras.Model:
    """A DNN taking one scalar input per feature name; batch normalization scales them.

    Args:
        features: Names of scalar features (dict keys of the pipeline's features).
        hidden: Dense widths (ReLU).
        dropout: Dropout after each hidden layer.
        num_classes: 1 → sigmoid score, else softmax.
    """
    inputs = {f: keras.Input((), name=f) for f in features}
    h = keras.layers.Concatenate()([keras.layers.Reshape((1,))(inputs[f]) for f in features])
    h = keras.layers.BatchNormalization(synchronized=True)(h)  # global-batch statistics on every replica count
    for width in hidden:
        h = keras.layers.Dense(width, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    act = "sigmoid" if num_classes == 1 else "softmax"
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation=act, name="score")(h),
                       name="high_level_dnn")
