"""``export_run``: a finished training run → a SavedModel with its preprocessing and metadata."""
from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hepflow.data import RECORD_ID, make_dataset
from hepflow.data.readers import inspect_sample
from hepflow.errors import ConfigError, DataError
from hepflow.runs import (
    build_transform,
    finished_run,
    package_versions,
    score_specs,
    split_specs,
    threshold_at,
)
from hepflow.serving.export import export, export_mean
from hepflow.serving.generator import export_generator
from hepflow.serving.onnx import export_onnx, require_onnx

__all__ = ["export_run", "export_ensemble"]


def export_run(run_dir: str, base_dir: str, *, version: int | None = None, onnx: bool = False,
               progress: bool = True) -> str:
    """Exports ``run_dir/model.keras`` with the run's pipeline transform inside.

    The raw-input signature takes the features the run's samples read from the files (names,
    per-row shapes and dtypes as in the training files). The metadata holds the samples, the
    class names, the score thresholds of the εS = 0.3 and 0.5 working points (measured on the
    validation files), the run's config and the package versions.

    Args:
        run_dir: A finished training run.
        base_dir: The model base folder.
        version: Version number; default the next free one.
        onnx: Also write ``onnx/serving_default.onnx`` and ``onnx/serve_features.onnx``
            (``hepflow.serving.onnx``, the ``[onnx]`` extra), each checked against the
            SavedModel on 64 validation rows. Classifier runs only.
        progress: Progress bar while scoring the validation files.

    Returns:
        The export folder ``base_dir/<run name>/<version>``.
    """
    cfg, model = _load_finished(run_dir)
    if cfg["training"]["task"] == "generative":
        if onnx:
            raise ValueError(f"ONNX export covers classifier runs; {run_dir} is a generative run. Received: onnx=True")

        return export_generator(model, base_dir, name=cfg["name"], version=version,
                                metadata={"samples": [s.to_dict() for s in split_specs(cfg)["train"]],
                                          "versions": package_versions()})
    splits = split_specs(cfg)
    transform = build_transform(cfg)
    thresholds: dict[str, Any] = {}
    if splits["validation"]:
        _, labels, scores = score_specs(model, splits["validation"], transform=transform, progress=progress,
                                        desc="validation thresholds")
        thresholds = _thresholds(labels, scores)
    raw_inputs = _raw_inputs(splits)
    metadata = {"name": cfg["name"], "run_dir": os.path.abspath(run_dir), "classes": _classes(splits),
                "samples": [s.to_dict() for s in splits["train"]], "thresholds_at_signal_efficiency": thresholds,
                "transform": cfg["transform"], "config": cfg, "versions": package_versions()}
    if onnx:
        require_onnx()  # before the SavedModel is written
    preprocess = transform if transform is not None else (lambda x: x)
    out = export(model, base_dir, name=cfg["name"], raw_inputs=raw_inputs, preprocess=preprocess,
                 metadata=metadata, version=version)
    if onnx:
        raw = _check_rows(splits)
        features = preprocess({k: tf.constant(v) for k, v in raw.items()})
        export_onnx(out, {"serving_default": {k: raw[k] for k in raw_inputs},
                          "serve_features": {t.name: features[t.name].numpy() for t in model.inputs}})
    return out


def export_ensemble(run_dirs: list[str], base_dir: str, *, name: str, version: int | None = None,
                    onnx: bool = False, progress: bool = True) -> str:
    """Exports several classifier runs as one SavedModel scoring the mean of their outputs.

    The score is what ``hepflow evaluate --ensemble`` reports. ``serving_default`` takes every
    raw feature any member reads (a feature read by two members must have the same shape and
    dtype in both) and applies each member's own pipeline transform. The metadata lists the
    members (run, config) and the ensemble's εS = 0.3 and 0.5 thresholds on the validation files,
    which the members must share.

    Args:
        run_dirs: Two or more finished classifier runs.
        base_dir: The model base folder; the export goes to ``base_dir/name/version``.
        name: The ensemble's name.
        version: Version number; default the next free one.
        onnx: Also write ``onnx/serving_default.onnx`` (raw inputs, every member's
            preprocessing inside; the ``[onnx]`` extra), checked against the SavedModel on 64
            validation rows. There is no ``serve_features`` file: the members' inputs differ.
        progress: Progress bars while scoring the validation files.

    Returns:
        The export folder.
    """
    if len(run_dirs) < 2:
        raise ConfigError(f"An ensemble needs two or more runs. Received: {list(run_dirs)}")
    if onnx:
        require_onnx()  # before the SavedModel is written
    members, raw_inputs, scores, labels, validation, configs, check = [], {}, [], None, None, [], {}
    for run_dir in run_dirs:
        cfg, model = _load_finished(run_dir)
        if cfg["training"]["task"] != "classification":
            raise ConfigError(f"{run_dir}: only classifier runs form an ensemble. Received: task={cfg['training']['task']!r}")
        splits = split_specs(cfg)
        files = [(s.name, s.files) for s in splits["validation"]]
        if validation is not None and files != validation:
            raise DataError(f"{run_dir} has other validation files than {run_dirs[0]}; ensemble members need the "
                            "same `data` section.")
        validation = files
        for key, spec in _raw_inputs(splits).items():
            if key in raw_inputs and (raw_inputs[key].shape, raw_inputs[key].dtype) != (spec.shape, spec.dtype):
                raise DataError(f"{run_dir}: raw input {key!r} is {spec.shape} {spec.dtype.name} but another member "
                                f"reads it as {raw_inputs[key].shape} {raw_inputs[key].dtype.name}.")
            raw_inputs[key] = spec
        transform = build_transform(cfg)
        members.append((model, transform if transform is not None else (lambda x: x)))
        configs.append({"run_dir": os.path.abspath(run_dir), "config": cfg})
        if onnx:
            rows = _check_rows(splits)
            if check and not np.array_equal(check[RECORD_ID], rows[RECORD_ID]):
                raise DataError(f"{run_dir} reads other rows first than the ensemble's first member; ensemble "
                                "members need the same `data` section.")
            check.update(rows)
        if splits["validation"]:
            _, labels, s = score_specs(model, splits["validation"], transform=transform, progress=progress,
                                       desc=f"validation {cfg['name']}")
            scores.append(s)
    thresholds = _thresholds(labels, np.mean(scores, axis=0)) if scores else {}
    metadata = {"name": name, "ensemble": "mean of the members' scores", "members": configs,
                "classes": _classes(splits), "thresholds_at_signal_efficiency": thresholds,
                "versions": package_versions()}
    out = export_mean(members, base_dir, name=name, raw_inputs=raw_inputs, metadata=metadata, version=version)
    if onnx:
        export_onnx(out, {"serving_default": {k: v for k, v in check.items() if k in raw_inputs}})
    return out


def _check_rows(splits: dict) -> dict[str, np.ndarray]:
    """The first 64 validation rows (else training rows) of a run's raw features and their record ids,
    on which an ONNX conversion is checked."""
    raw, _ = next(iter(make_dataset(splits["validation"] or splits["train"], batch_size=64, shuffle=0,
                                    epoch="all", drop_remainder=False, with_record_id=True)))
    return {k: v.numpy() for k, v in raw.items()}


def _load_finished(run_dir: str):
    """``(config, model)`` of a finished run, or a DataError naming what is missing."""
    cfg = finished_run(run_dir)["config"]
    return cfg, keras.saving.load_model(os.path.join(run_dir, "model.keras"))


def _raw_inputs(splits: dict) -> dict[str, tf.TensorSpec]:
    layout = inspect_sample(splits["train"][0], 0)
    return {name: tf.TensorSpec((None, *f.row_shape), tf.as_dtype(f.dtype)) for name, f in layout.features.items()}


def _classes(splits: dict) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {}
    for spec in splits["train"]:
        classes.setdefault(str(spec.label), []).append(spec.name)
    return classes


def _thresholds(labels, scores) -> dict[str, Any]:
    return {str(e): threshold_at(labels, scores, e) for e in (0.3, 0.5)} if np.unique(labels).size == 2 else {}
