"""Particle Flow and Energy Flow Networks (Komiske, Metodiev, Thaler, arXiv:1810.05165).

PFN: ``F(Σ_i Φ(p_i))`` over particle features; EFN: ``F(Σ_i z_i Φ(η_i, φ_i))`` with the
momentum fractions z_i, which makes it IRC safe. Defaults follow the paper: Φ (100, 100, 256),
F (100, 100, 100).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

from hepflow.layers import MaskedSum, WeightedSum

__all__ = ["particle_flow_network", "energy_flow_network"]


def _mlp(h, widths: Sequence[int], prefix: str, dropout: float = 0.0):
    for i, w in enumerate(widths):
        h = keras.layers.Dense(w, activation="relu", name=f"{prefix}_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    return h


def _head(h, num_classes: int):
    act = "sigmoid" if num_classes == 1 else "softmax"
    return keras.layers.Dense(num_classes, activation=act, name="score")(h)


def particle_flow_network(*, n_particles: int = 200, n_features: int = 7, phi_sizes: Sequence[int] = (100, 100, 256),
                          f_sizes: Sequence[int] = (100, 100, 100), f_dropout: float = 0.0,
                          num_classes: int = 1) -> keras.Model:
    """PFN on ``particles`` ``(batch, n, n_features)`` with ``mask`` ``(batch, n, 1)``
    (``hepflow.ops.jets.ConstituentFeatures`` makes both)."""
    particles = keras.Input((n_particles, n_features), name="particles")
    mask = keras.Input((n_particles, 1), name="mask")
    latent = MaskedSum(name="sum")([_mlp(particles, phi_sizes, "phi"), mask])
    return keras.Model({"particles": particles, "mask": mask},
                       _head(_mlp(latent, f_sizes, "F", f_dropout), num_classes), name="pfn")


def energy_flow_network(*, n_particles: int = 200, phi_sizes: Sequence[int] = (100, 100, 256),
                        f_sizes: Sequence[int] = (100, 100, 100), num_classes: int = 1) -> keras.Model:
    """EFN on ``points`` (Δη, Δφ) ``(batch, n, 2)`` weighted by ``z`` (pT / pT_jet) ``(batch, n)``."""
    points = keras.Input((n_particles, 2), name="points")
    z = keras.Input((n_particles,), name="z")
    latent = WeightedSum(name="weighted_sum")([_mlp(points, phi_sizes, "phi"), z])
    return keras.Model({"points": points, "z": z}, _head(_mlp(latent, f_sizes, "F"), num_classes), name="efn")
