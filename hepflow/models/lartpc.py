"""Networks on reconstructed LArTPC images ``(wires, ticks, planes)``.

* :func:`lartpc_event_cnn`: a CVN-style event classifier (NOvA, JINST 11 P09001: each view in
  its own convolutional branch, the branches merged before the dense layers), here one branch
  per wire plane (U, V, Y), since the three views of an event do not line up pixel by pixel.
* :func:`lartpc_unet`: per-pixel semantic segmentation (track, shower, Michel, δ-ray,
  low-energy, and no charge) with a small U-Net (Ronneberger et al., arXiv:1505.04597), the
  dense counterpart of the sparse U-ResNet of lartpc_mlreco3d; the planes are its channels.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["lartpc_event_cnn", "lartpc_unet"]


def lartpc_event_cnn(*, input_shape: Sequence[int] = (256, 128, 3), filters: Sequence[int] = (16, 32, 64, 128),
                     dense: Sequence[int] = (128,), dropout: float = 0.3, flip_ticks: bool = True,
                     num_classes: int = 3) -> keras.Model:
    """A classifier of LArTPC events from the feature ``image`` (planes last).

    Args:
        input_shape: ``(wires, ticks, planes)``.
        filters: Filters of each branch's conv blocks (3 × 3 convolution, ReLU, 2 × 2 max-pool);
            each branch ends in its global maximum and average. Default four blocks: after them
            one unit sees ~45 × 45 pixels (13 cm of wires), enough for a gap between a vertex
            and a shower.
        dense: Widths of the dense layers after the branches are merged (ReLU). Default (128,).
        dropout: Dropout after each dense layer. Default 0.3.
        flip_ticks: In training, mirror each event in time (drift direction) with probability
            ½: the physics is symmetric under it, so the network sees twice the events.
            Inactive at inference. Default True.
        num_classes: Event classes (softmax). Default 3 (νμ CC, νe CC, NC π0).
    """
    image = keras.Input(tuple(input_shape), name="image")
    x = keras.layers.RandomFlip("horizontal", name="flip_ticks")(image) if flip_ticks else image
    branches = []
    for plane in range(input_shape[-1]):
        h = keras.layers.Cropping3D(((0, 0), (0, 0), (plane, input_shape[-1] - plane - 1)))(
            keras.layers.Reshape((*input_shape, 1))(x))
        h = keras.layers.Reshape((*input_shape[:2], 1))(h)
        for f in filters:
            h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
            h = keras.layers.MaxPooling2D(2)(h)
        branches += [keras.layers.GlobalMaxPooling2D()(h), keras.layers.GlobalAveragePooling2D()(h)]
    h = keras.layers.Concatenate()(branches)
    for width in dense:
        h = keras.layers.Dense(width, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    score = keras.layers.Dense(num_classes, activation="softmax", name="score")(h)
    return keras.Model({"image": image}, score, name="lartpc_event_cnn")


def lartpc_unet(*, input_shape: Sequence[int] = (256, 128, 3), filters: Sequence[int] = (16, 32, 64),
                num_classes: int = 6, planes: int = 3) -> keras.Model:
    """A U-Net labelling every pixel of every plane: ``image`` ``(W, T, planes)`` → class
    probabilities ``(W, T, planes, num_classes)``.

    Args:
        input_shape: ``(wires, ticks, planes)``; wires and ticks divisible by ``2 ** (len(filters) − 1)``.
        filters: Filters per level (two 3 × 3 convolutions each; 2 × 2 pooling down, transposed
            convolutions up, skip connections across).
        num_classes: Pixel classes. Default 6 (``SEMANTIC_CLASSES``).
        planes: Planes labelled (the output's third axis). Default 3.
    """
    image = keras.Input(tuple(input_shape), name="image")
    h, skips = image, []
    for level, f in enumerate(filters):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        if level < len(filters) - 1:
            skips.append(h)
            h = keras.layers.MaxPooling2D(2)(h)
    for f, skip in zip(reversed(filters[:-1]), reversed(skips)):
        h = keras.layers.Conv2DTranspose(f, 2, strides=2, padding="same")(h)
        h = keras.layers.Concatenate()([h, skip])
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
    logits = keras.layers.Conv2D(planes * num_classes, 1)(h)
    logits = keras.layers.Reshape((*input_shape[:2], planes, num_classes))(logits)
    return keras.Model({"image": image}, keras.layers.Softmax(name="score")(logits), name="lartpc_unet")
