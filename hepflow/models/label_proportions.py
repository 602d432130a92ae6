"""Learning from label proportions (LLP): a classifier trained on mixed samples of known composition.

Weak supervision as in Dery, Nachman, Rubbo, Schwartzman (arXiv:1702.00414): no jet carries
a truth label, only each *sample* its known signal fraction ``f_k``. The loss compares, in
each batch, the mean prediction over the jets of sample k with ``f_k`` (binary cross
entropy between the two, weighted by the sample's share of the batch). Give each sample of
the config its fraction as a one-element soft label, e.g. ``label: [0.2]``.

The classifier inside is any hepflow sigmoid classifier (``high_level_dnn``, ``jet_cnn``, ...);
``model(features)`` returns its signal probability per jet, so a trained model is evaluated
like a supervised one.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from hepflow.models.base import OwnStepModel

__all__ = ["LabelProportions", "label_proportions", "proportion_loss"]


def proportion_loss(fractions, predictions):
    """Σ_k (n_k / n) · BCE(f_k, mean of the predictions of the jets with fraction f_k)."""
    fractions = tf.reshape(tf.cast(fractions, tf.float32), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.float32), [-1])
    values, groups = tf.unique(fractions)
    n = tf.shape(values)[0]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(predictions), groups, n)
    means = tf.math.unsorted_segment_sum(predictions, groups, n) / counts
    means = tf.clip_by_value(means, 1e-6, 1 - 1e-6)
    bce = -(values * tf.math.log(means) + (1 - values) * tf.math.log(1 - means))
    return tf.reduce_sum(counts / tf.reduce_sum(counts) * bce)


@keras.saving.register_keras_serializable(package="hepflow")
class LabelProportions(OwnStepModel):
    """Trains ``classifier`` with :func:`proportion_loss` on ``(features, fraction)`` batches.

    Args:
        classifier: A Keras model with named inputs and one sigmoid output.
    """

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        if classifier.outputs[0].shape[-1] != 1:
            raise ValueError("LabelProportions needs a classifier with one sigmoid output. "
                             f"Received: output shape {classifier.outputs[0].shape}")
        self.classifier = classifier
        self.input_names = [t.name for t in classifier.inputs]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    def _inputs(self, features: Mapping[str, Any]):
        missing = [n for n in self.input_names if n not in features]
        if missing:
            raise KeyError(f"The classifier needs inputs {self.input_names}; the batch has {sorted(features)} "
                           f"(missing {missing}).")
        return {n: features[n] for n in self.input_names}

    def call(self, inputs, training=False):
        return self.classifier(self._inputs(inputs), training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        features, fractions = data[0], data[1]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = proportion_loss(fractions, self(features, training=True))
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(proportion_loss(data[1], self(data[0], training=False)))
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {**super().get_config(), "classifier": keras.saving.serialize_keras_object(self.classifier)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


def label_proportions(*, classifier: str = "high_level_dnn", classifier_args: Mapping[str, Any] | None = None,
                      name: str = "label_proportions") -> LabelProportions:
    """A :class:`LabelProportions` around a hepflow classifier named by its factory (for configs).

    Args:
        classifier: Name of a hepflow model factory, e.g. ``high_level_dnn`` or ``jet_cnn``.
        classifier_args: Its keyword arguments.
    """
    from hepflow import models  # circular: hepflow.models imports this module

    factory = getattr(models, classifier, None)
    if factory is None or classifier in ("label_proportions",):
        raise ValueError(f"classifier must name a hepflow classifier factory. Received: classifier={classifier!r}")
    return LabelProportions(factory(**dict(classifier_args or {})), name=name)
