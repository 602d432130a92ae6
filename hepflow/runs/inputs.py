"""The bridge between pipeline batches and a model's named inputs."""
from __future__ import annotations

import tensorflow as tf

from hepflow.errors import ConfigError

__all__ = ["model_inputs"]


def model_inputs(model, dataset, *, target: str | None = None, target_scale: float = 1.0, per_pixel: bool = False):
    """Maps ``(features, label, ...)`` batches to the model's named inputs, with a clear error for missing ones.

    Models without symbolic inputs (subclassed models with their own ``train_step``, such as
    :class:`hepflow.models.CaloGAN`) get the batches as they are.

    Args:
        target: For regression: the feature that becomes the label (divided by
            ``target_scale``) in place of the sample label: ``(batch,)`` for a number per row,
            its own shape for more (a per-pixel target such as PUMML's image).
        per_pixel: For segmentation: the ``target`` feature is a map of class labels, passed on
            as int32 in its own shape.
    """
    try:
        names = [t.name for t in model.inputs]
    except (AttributeError, ValueError):
        return dataset
    have = set(dataset.element_spec[0])
    missing = [n for n in names + ([target] if target else []) if n not in have]
    if missing:
        raise ConfigError(f"Model '{model.name}' needs inputs {names}" + (f" and the target '{target}'" if target else "")
                          + f"; the pipeline gives {sorted(have)} (missing {missing}). "
                          "Check the config's `transform` and the samples' `keys`.")
    if target and per_pixel:
        return dataset.map(lambda x, y, *rest: ({n: x[n] for n in names}, tf.cast(x[target], tf.int32), *rest))
    if target:
        row_shape = dataset.element_spec[0][target].shape[1:]
        one_number = row_shape.is_fully_defined() and row_shape.num_elements() == 1
        return dataset.map(lambda x, y, *rest: ({n: x[n] for n in names},
                                                (tf.reshape(tf.cast(x[target], tf.float32), [-1]) if one_number
                                                 else tf.cast(x[target], tf.float32)) / target_scale,
                                                *rest))
    return dataset.map(lambda x, *rest: ({n: x[n] for n in names}, *rest))
