"""Reconstruction and ML in one SavedModel: raw LArTPC waveforms in, hits, pixel classes and the
event class out (loadable with TensorFlow alone)."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import keras
import tensorflow as tf

from hepflow.errors import ConfigError
from hepflow.physics.lartpc import LArTPCSettings
from hepflow.reco.lartpc import lartpc_reco_graph
from hepflow.runs import finished_run

__all__ = ["export_lartpc_chain", "export_lartpc_runs"]


def export_lartpc_chain(path: str, *, settings: LArTPCSettings = LArTPCSettings(), image_ticks: int = 8,
                        event_classifier: keras.Model | None = None, segmenter: keras.Model | None = None,
                        class_names: tuple[str, ...] = ()) -> str:
    """Writes one SavedModel running the LArTPC RecoGraph and the networks on its image.

    ``serving_default(adc)`` with ``adc`` ``(batch, 3, wires, ticks)`` uint16 returns ``hits``
    ``(batch, max_hits, 5)`` and ``n_hits``; with an ``event_classifier`` also ``event_class``
    (softmax probabilities); with a ``segmenter`` also ``pixel_class`` ``(batch, wires, ticks /
    image_ticks, 3)`` int32 (the most probable class of every image pixel, −1 where the image
    is empty). ``hepflow_lartpc.json`` beside it records the settings and class names.

    Returns:
        ``path``.
    """
    graph = lartpc_reco_graph(settings, outputs=["hits", "n_hits", "image"], image_ticks=image_ticks)
    module = tf.Module(name="lartpc_chain")
    module.networks = [m for m in (event_classifier, segmenter) if m is not None]
    # every variable reachable from the module, training-only state included (the seed of a
    # classifier's augmentation is captured by its graph even at inference)
    module.network_variables = [v.value for m in module.networks for v in m.variables]

    @tf.function(input_signature=[tf.TensorSpec((None, 3, settings.n_wires, settings.n_ticks), tf.uint16, name="adc")])
    def serve(adc):
        products = graph.compute({"adc": adc}, ["hits", "n_hits", "image"])
        out = {"hits": products["hits"], "n_hits": products["n_hits"]}
        image = products["image"]
        if event_classifier is not None:
            out["event_class"] = event_classifier({"image": image}, training=False)
        if segmenter is not None:
            label = tf.argmax(segmenter({"image": image}, training=False), axis=-1, output_type=tf.int32)
            out["pixel_class"] = tf.where(tf.not_equal(image, 0), label, -tf.ones_like(label))
        return out

    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    with open(os.path.join(path, "hepflow_lartpc.json"), "w") as f:
        json.dump({"settings": dataclasses.asdict(settings), "image_ticks": image_ticks,
                   "class_names": list(class_names)}, f, indent=1)
    return path


def export_lartpc_runs(path: str, runs: Mapping[str, str]) -> str:
    """:func:`export_lartpc_chain` from finished runs: ``{"event_class": run_dir, "segmentation": run_dir}``
    (either or both), trained on ``lartpc_reco`` images; their reconstruction settings must agree.

    Raises:
        ConfigError: an unknown role, or runs whose ``lartpc_reco`` transforms differ.
    """
    unknown = sorted(set(runs) - {"event_class", "segmentation"})
    if unknown or not runs:
        raise ConfigError(f"runs must map event_class and/or segmentation to run directories. Received: {dict(runs)}")
    models, recos, names = {}, [], ()
    for role, run_dir in runs.items():
        run = finished_run(run_dir)
        reco = [t["lartpc_reco"] for t in run["config"]["transform"] if isinstance(t, Mapping) and "lartpc_reco" in t]
        if not reco:
            raise ConfigError(f"{run_dir}: the run's transform has no lartpc_reco step.")
        recos.append(dict(reco[0] or {}))
        models[role] = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
        if role == "event_class":
            names = tuple(s["name"] for s in sorted(run["config"]["data"]["samples"], key=lambda s: s["label"]))
    keys = ("settings", "image_ticks")
    if any({k: r.get(k) for k in keys} != {k: recos[0].get(k) for k in keys} for r in recos):
        raise ConfigError(f"The runs reconstruct differently: {recos}")
    settings = LArTPCSettings(**dict(recos[0].get("settings") or {}))
    return export_lartpc_chain(path, settings=settings, image_ticks=int(recos[0].get("image_ticks") or 8),
                               event_classifier=models.get("event_class"), segmenter=models.get("segmentation"),
                               class_names=names)
