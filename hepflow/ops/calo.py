"""Calorimeter shower-shape features as TensorFlow ops (CaloGAN layout).

Inputs are the three layers ``layer_0`` (batch, 3, 96), ``layer_1`` (batch, 12, 12) and
``layer_2`` (batch, 12, 6): energy per cell, rows × columns. The features follow the CaloGAN
study (Paganini, de Oliveira, Nachman, arXiv:1712.10321):

* ``e_0``, ``e_1``, ``e_2``: energy per layer; ``e_total``; ``f_0``, ``f_1``, ``f_2``: fractions;
* ``depth``: the energy-weighted mean layer index Σ i·E_i / E_total;
* ``width_col_i``, ``width_row_i``: energy-weighted RMS spread per layer, in cells, along the
  columns and along the rows;
* ``e_ratio``: (E_max1 − E_max2) / (E_max1 + E_max2) of the two most energetic cells of the
  first layer (``layer_0``, the fine strips), which separates one from two close photons;
* ``sparsity_i``: the fraction of cells of layer i with energy.

Empty layers give 0 for ratios and widths (never NaN).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["LAYERS", "SHAPE_NAMES", "shower_shapes", "ShowerShapes"]

LAYERS = ("layer_0", "layer_1", "layer_2")
SHAPE_NAMES = ("e_0", "e_1", "e_2", "e_total", "f_0", "f_1", "f_2", "depth",
               "width_col_0", "width_col_1", "width_col_2", "width_row_0", "width_row_1", "width_row_2",
               "e_ratio", "sparsity_0", "sparsity_1", "sparsity_2")


def _width(profile: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """RMS of a (batch, n) energy profile over cell index, 0 when empty."""
    x = tf.range(tf.shape(profile)[1], dtype=tf.float32)[None, :]
    mean = tf.math.divide_no_nan(tf.reduce_sum(profile * x, 1), total)
    variance = tf.math.divide_no_nan(tf.reduce_sum(profile * (x - mean[:, None]) ** 2, 1), total)  # centred: stable
    positive = variance > 0  # sqrt with a finite gradient at 0 (a generator's loss differentiates through it)
    return tf.where(positive, tf.sqrt(tf.where(positive, variance, 1.0)), 0.0)


def shower_shapes(layers: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The shower-shape features of a batch of showers, each ``(batch,)`` float32 (see module doc)."""
    cells = [tf.cast(layers[name], tf.float32) for name in LAYERS]
    energies = [tf.reduce_sum(c, axis=[1, 2]) for c in cells]
    total = tf.add_n(energies)
    out: dict[str, tf.Tensor] = {}
    for i, (c, e) in enumerate(zip(cells, energies)):
        out[f"e_{i}"] = e
        out[f"f_{i}"] = tf.math.divide_no_nan(e, total)
        out[f"width_col_{i}"] = _width(tf.reduce_sum(c, 1), e)
        out[f"width_row_{i}"] = _width(tf.reduce_sum(c, 2), e)
        out[f"sparsity_{i}"] = tf.reduce_mean(tf.cast(c > 0, tf.float32), axis=[1, 2])
    out["e_total"] = total
    out["depth"] = tf.math.divide_no_nan(energies[1] + 2.0 * energies[2], total)
    top2 = tf.math.top_k(tf.reshape(cells[0], (tf.shape(cells[0])[0], -1)), k=2).values
    out["e_ratio"] = tf.math.divide_no_nan(top2[:, 0] - top2[:, 1], top2[:, 0] + top2[:, 1])
    return {k: out[k] for k in SHAPE_NAMES}


class ShowerShapes:
    """Pipeline transform: adds the shower-shape features (``SHAPE_NAMES``) to the layers.

    Args:
        keep_layers: Keep ``layer_0..2`` in the output (for CNNs); otherwise drop them.
    """

    def __init__(self, *, keep_layers: bool = False) -> None:
        self.keep_layers = keep_layers

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        missing = [k for k in LAYERS if k not in features]
        if missing:
            raise KeyError(f"ShowerShapes needs {list(LAYERS)}. Received: {sorted(features)}")
        out = dict(features)
        out.update(shower_shapes(features))
        if not self.keep_layers:
            for k in LAYERS:
                out.pop(k)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"keep_layers": self.keep_layers}
