"""SavedModel export of a shower generator: incident energies and a seed in, showers out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.serving.export import version_folder, write_archive

__all__ = ["export_generator"]


def export_generator(model, base_dir: str, *, name: str | None = None, metadata: Mapping[str, Any] | None = None,
                     version: int | None = None) -> str:
    """Writes a :class:`hepflow.models.CaloGAN` as a versioned SavedModel; returns the version folder.

    The ``serving_default`` signature (``generate``) takes ``energy`` (batch, 1) float32 in GeV
    and ``seed`` () int64 — plus ``particle`` (batch,) int64 for a generator conditioned on
    several particle types — and returns ``layer_0`` (batch, 3, 96), ``layer_1`` (batch, 12, 12)
    and ``layer_2`` (batch, 12, 6) in GeV; the noise is drawn with stateless random ops from the
    seed, so the same inputs give the same showers. Loads with TensorFlow alone.
    """
    out = version_folder(base_dir, name or model.name, version)
    spec = [tf.TensorSpec((None, 1), tf.float32, name="energy"), tf.TensorSpec((), tf.int64, name="seed")]
    inputs = {"energy": "(batch, 1) float32, GeV", "seed": "() int64"}

    def showers(energy, seed, **particle):
        energy = tf.ensure_shape(energy, (None, 1))
        noise = tf.random.stateless_normal((tf.shape(energy)[0], model.noise_dim),
                                           seed=tf.stack([seed, tf.constant(0, tf.int64)]))
        return model({"energy": energy, "noise": noise, **particle})

    if getattr(model, "particles", 1) > 1:
        spec.append(tf.TensorSpec((None,), tf.int64, name="particle"))
        inputs["particle"] = f"(batch,) int64, 0 … {model.particles - 1}"

        def generate(energy, seed, particle):
            return showers(energy, seed, particle=particle)
    else:
        def generate(energy, seed):
            return showers(energy, seed)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", generate, input_signature=spec)
    meta = {"model": model.name, "kind": "generator", "config": model.get_config(), "inputs": inputs,
            "outputs": {name: [None, *shape] for name, shape in CALOGAN_LAYERS.items()},
            **dict(metadata or {})}
    return write_archive(archive, out, meta)
