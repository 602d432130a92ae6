"""ParticleNet and ParticleNet-Lite (Qu & Gouskos, arXiv:1902.08570).

EdgeConv blocks: the first finds neighbours in (Δη, Δφ), later ones in the previous block's
feature space. Then global average pooling over real particles, dense 256 (ReLU) with dropout
0.1, and the output. Published settings: ParticleNet k = 16 with channels (64, 64, 64),
(128, 128, 128), (256, 256, 256); Lite k = 7 with (32, 32, 32), (64, 64, 64).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

from hepflow.layers import EdgeConv, MaskedAverage

__all__ = ["particlenet", "particlenet_lite"]


def particlenet(*, n_particles: int = 200, n_features: int = 7, k: int = 16,
                blocks: Sequence[Sequence[int]] = ((64, 64, 64), (128, 128, 128), (256, 256, 256)),
                dense: int = 256, dropout: float = 0.1, num_classes: int = 1, name: str = "particlenet") -> keras.Model:
    """ParticleNet on ``points`` ``(batch, n, 2)``, ``particles`` ``(batch, n, f)``, ``mask`` ``(batch, n, 1)``."""
    points = keras.Input((n_particles, 2), name="points")
    particles = keras.Input((n_particles, n_features), name="particles")
    mask = keras.Input((n_particles, 1), name="mask")
    x = keras.layers.BatchNormalization(synchronized=True, name="input_norm")(particles)
    coords = points
    for i, channels in enumerate(blocks):
        x = EdgeConv(k=k, channels=channels, name=f"edge_conv_{i}")([coords, x, mask])
        coords = x
    h = MaskedAverage(name="pool")([x, mask])
    h = keras.layers.Dense(dense, activation="relu")(h)
    h = keras.layers.Dropout(dropout)(h)
    act = "sigmoid" if num_classes == 1 else "softmax"
    out = keras.layers.Dense(num_classes, activation=act, name="score")(h)
    return keras.Model({"points": points, "particles": particles, "mask": mask}, out, name=name)


def particlenet_lite(*, n_particles: int = 200, n_features: int = 7, num_classes: int = 1) -> keras.Model:
    """ParticleNet-Lite: k = 7, EdgeConv channels (32, 32, 32), (64, 64, 64), dense 256."""
    return particlenet(n_particles=n_particles, n_features=n_features, k=7, blocks=((32, 32, 32), (64, 64, 64)),
                       num_classes=num_classes, name="particlenet_lite")
