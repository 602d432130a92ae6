"""``export_run``: a finished training run → a SavedModel with its preprocessing and metadata."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from hepflow.data import DataError, make_dataset
from hepflow.serving.export import export
from hepflow.serving.onnx import export_onnx, require_onnx

__all__ = ["export_run"]


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
    import keras
    import numpy as np

    from hepflow.data.readers import inspect_sample
    from hepflow.evaluation.metrics import threshold_at
    from hepflow.evaluation.runs import score_specs
    from hepflow.training.config import build_transform, load_config, split_specs
    from hepflow.training.train import package_versions

    if not os.path.isfile(os.path.join(run_dir, "model.keras")):
        raise DataError(f"{run_dir} is not a finished run: model.keras is missing.")
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    if cfg["training"]["task"] == "generative":
        from hepflow.serving.generator import export_generator

        if onnx:
            raise ValueError(f"ONNX export covers classifier runs; {run_dir} is a generative run. Received: onnx=True")

        return export_generator(model, base_dir, name=cfg["name"], version=version,
                                metadata={"samples": [s.to_dict() for s in split_specs(cfg)["train"]],
                                          "versions": package_versions()})
    splits = split_specs(cfg)
    transform = build_transform(cfg)
    layout = inspect_sample(splits["train"][0], 0)
    raw_inputs = {name: tf.TensorSpec((None, *f.row_shape), tf.as_dtype(f.dtype)) for name, f in
                  layout.features.items()}
    classes: dict[str, list[str]] = {}
    for spec in splits["train"]:
        classes.setdefault(str(spec.label), []).append(spec.name)
    thresholds: dict[str, Any] = {}
    if splits["validation"]:
        _, labels, scores = score_specs(model, splits["validation"], transform=transform, progress=progress,
                                        desc="validation thresholds")
        if np.unique(labels).size == 2:
            thresholds = {str(e): threshold_at(labels, scores, e) for e in (0.3, 0.5)}
    metadata = {"name": cfg["name"], "run_dir": os.path.abspath(run_dir), "classes": classes,
                "samples": [s.to_dict() for s in splits["train"]], "thresholds_at_signal_efficiency": thresholds,
                "transform": cfg["transform"], "config": cfg, "versions": package_versions()}
    if onnx:
        require_onnx()  # before the SavedModel is written
    preprocess = transform if transform is not None else (lambda x: x)
    out = export(model, base_dir, name=cfg["name"], raw_inputs=raw_inputs, preprocess=preprocess,
                 metadata=metadata, version=version)
    if onnx:
        raw, _ = next(iter(make_dataset(splits["validation"] or splits["train"], batch_size=64, shuffle=0,
                                        epoch="all", drop_remainder=False)))
        features = preprocess(dict(raw))
        export_onnx(out, {"serving_default": {k: raw[k].numpy() for k in raw_inputs},
                          "serve_features": {t.name: features[t.name].numpy() for t in model.inputs}})
    return out
