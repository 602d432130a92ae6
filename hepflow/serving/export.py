"""Export a trained model as a SavedModel with the training-time preprocessing inside.

Layout (TF Serving's): ``<base>/<name>/<version>/`` holding ``saved_model.pb``, ``variables/``
and ``assets.extra/hepflow.json`` (metadata). Signatures:

* ``serving_default`` (also ``serve``): the raw inputs the pipeline read from the files (e.g.
  ``constituents`` ``(batch, 200, 4)`` float32) → the same TF preprocessing as in training →
  ``{"score": (batch,)}`` (``(batch, K)``, every class's probability, for a softmax over K > 2 classes).
* ``serve_features``: the model's own inputs (already preprocessed) → ``{"score": ...}`` alike.

The SavedModel needs TensorFlow only: ``tf.saved_model.load(path).signatures["serving_default"]``
works in a process that never imports hepflow.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from hepflow.io import atomic_path

__all__ = ["export", "export_mean", "METADATA_FILE"]

#: Metadata file inside the export (TF Serving ignores ``assets.extra``).
METADATA_FILE = os.path.join("assets.extra", "hepflow.json")


def _score(outputs: tf.Tensor) -> tf.Tensor:
    # a sigmoid head gives (batch, 1) → (batch,); a two-class softmax → class 1's probability (batch,);
    # a softmax over K > 2 classes → every class's probability (batch, K)
    if outputs.shape[-1] == 1:
        return outputs[:, 0]
    return outputs[:, 1] if outputs.shape[-1] == 2 else outputs


def _next_version(base: str) -> int:
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def export(model, base_dir: str, *, name: str | None = None, raw_inputs: Mapping[str, tf.TensorSpec] | None = None,
           preprocess: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]] | None = None,
           metadata: Mapping[str, Any] | None = None, version: int | None = None) -> str:
    """Writes ``model`` as a versioned SavedModel and returns the version folder.

    Args:
        model: A Keras model with named inputs (every ``hepflow.models`` model).
        base_dir: The model base folder; the export goes to ``base_dir/name/version``.
        name: Model name in the layout; default ``model.name``.
        raw_inputs: Feature name → ``tf.TensorSpec`` of the raw inputs (batch dimension
            ``None``) that ``preprocess`` takes, e.g. ``{"constituents": TensorSpec((None, 200, 4))}``.
            Without it, ``serving_default`` takes the model's inputs.
        preprocess: The pipeline transform used in training (TF ops on a dict of batched
            tensors); it must output every model input.
        metadata: JSON-serializable facts stored in ``assets.extra/hepflow.json`` (sample
            specs, class names, working-point thresholds, versions, ...).
        version: Version number; default one more than the highest existing.

    Raises:
        ValueError: ``raw_inputs`` without ``preprocess`` (or the reverse), or an existing
            version folder.
    """
    if (raw_inputs is None) != (preprocess is None):
        raise ValueError("Pass raw_inputs and preprocess together (or neither). "
                         f"Received: raw_inputs={raw_inputs!r}, preprocess={preprocess!r}")
    out = version_folder(base_dir, name or model.name, version)
    names = [t.name for t in model.inputs]
    feature_spec = {t.name: tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs}

    def serve_features(features):
        features = checked(features, feature_spec)
        return {"score": _score(model(features, training=False))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    if raw_inputs is not None:
        raw_spec = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype, name=k) for k, v in raw_inputs.items()}

        def serve(raw):
            features = preprocess(checked(raw, raw_spec))
            return {"score": _score(model({n: features[n] for n in names}, training=False))}

        archive.add_endpoint("serve", serve, input_signature=[raw_spec])
    else:
        archive.add_endpoint("serve", serve_features, input_signature=[feature_spec])
    archive.add_endpoint("serve_features", serve_features, input_signature=[feature_spec])
    meta = dict(metadata or {})
    meta.setdefault("model", model.name)
    meta.setdefault("raw_inputs", _describe(raw_inputs or feature_spec))
    meta.setdefault("feature_inputs", _describe(feature_spec))
    return write_archive(archive, out, meta)


def export_mean(members: list[tuple[Any, Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]]], base_dir: str,
                *, name: str, raw_inputs: Mapping[str, tf.TensorSpec], metadata: Mapping[str, Any] | None = None,
                version: int | None = None) -> str:
    """Writes an ensemble as one SavedModel: ``serving_default`` returns the mean of the members' scores.

    Args:
        members: ``(model, preprocess)`` pairs; each ``preprocess`` maps the raw inputs to that
            model's inputs (the members may read different raw features and preprocess them
            differently).
        base_dir: The model base folder; the export goes to ``base_dir/name/version``.
        name: Model name in the layout.
        raw_inputs: Feature name → ``tf.TensorSpec`` of every raw input any member reads.
        metadata: JSON-serializable facts for ``assets.extra/hepflow.json``.
        version: Version number; default one more than the highest existing.

    There is no ``serve_features`` signature: the members' preprocessed inputs differ.
    """
    if len(members) < 2:
        raise ValueError(f"An ensemble needs two or more models. Received: {len(members)}")
    out = version_folder(base_dir, name, version)
    raw_spec = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype, name=k) for k, v in raw_inputs.items()}
    archive = keras.export.ExportArchive()
    for model, _ in members:
        archive.track(model)

    def serve(raw):
        raw = checked(raw, raw_spec)
        scores = []
        for model, preprocess in members:
            features = preprocess(dict(raw))
            scores.append(_score(model({t.name: features[t.name] for t in model.inputs}, training=False)))
        return {"score": tf.add_n(scores) / len(scores)}

    archive.add_endpoint("serve", serve, input_signature=[raw_spec])
    meta = dict(metadata or {})
    meta.setdefault("model", name)
    meta.setdefault("raw_inputs", _describe(raw_spec))
    return write_archive(archive, out, meta)


def _describe(specs: Mapping[str, tf.TensorSpec]) -> dict[str, dict[str, Any]]:
    """Input name → ``{"shape": [None, ...], "dtype": ...}`` for the metadata."""
    return {k: {"shape": [None, *v.shape[1:]], "dtype": v.dtype.name} for k, v in specs.items()}


def checked(tensors: Mapping[str, tf.Tensor], specs: Mapping[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    """The tensors named in ``specs``, shape-checked: a clear error naming the input instead of a failure deep in the graph."""
    return {k: tf.ensure_shape(tf.identity(tensors[k], name=k), specs[k].shape) for k in specs}


def version_folder(base_dir: str, name: str, version: int | None) -> str:
    """``base_dir/name/version`` (default: the next free version), refusing an existing one."""
    base = os.path.join(base_dir, name)
    version = version or _next_version(base)
    out = os.path.join(base, str(version))
    if os.path.exists(out):
        raise ValueError(f"{out} exists; TF Serving versions are immutable. Pass another version. "
                         f"Received: version={version}")
    return out


def write_archive(archive, out: str, metadata: Mapping[str, Any]) -> str:
    """Writes a Keras ``ExportArchive`` plus ``assets.extra/hepflow.json`` to ``out`` atomically (temp + rename)."""
    with atomic_path(out) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a dead process that had this pid
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, METADATA_FILE), "w") as f:
            json.dump(dict(metadata), f, indent=1)
    return out
