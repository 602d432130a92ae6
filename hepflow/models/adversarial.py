"""A mass-decorrelated autoencoder: an adversary keeps the anomaly score from learning the jet mass.

A plain autoencoder's reconstruction error grows with the jet mass (heavier jets have more
structure), so a cut on it sculpts the background mass distribution and fakes a bump.
Following adversarial decorrelation (Louppe, Kagan, Cranmer, arXiv:1611.01046; for
autoencoders Heimel et al., arXiv:1808.08979), an adversary predicts the jet mass — as one
of ``mass_bins`` classes in ``mass_range`` — from the anomaly score, and the autoencoder
minimizes ``L = L_auto − λ · L_adv``: it is rewarded when the adversary cannot tell the mass
from its score. Each step first updates the adversary (minimizing ``L_adv``), then the
autoencoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from hepflow.models.autoencoders import Autoencoder, _features

__all__ = ["MassDecorrelatedAutoencoder", "adversarial_autoencoder"]


def _adversary(mass_bins: int, hidden: int) -> keras.Model:
    score = keras.Input((1,), name="log_score")
    h = keras.layers.Dense(hidden, activation="relu")(score)
    h = keras.layers.Dense(hidden, activation="relu")(h)
    return keras.Model(score, keras.layers.Dense(mass_bins, name="mass_logits")(h), name="adversary")


@keras.saving.register_keras_serializable(package="hepflow")
class MassDecorrelatedAutoencoder(Autoencoder):
    """An :class:`Autoencoder` trained against a jet-mass adversary (see the module docstring).

    The batches' features must hold ``mass_key`` beside the input.

    Args:
        adversary_weight: λ in ``L_auto − λ · L_adv`` (0 trains a plain autoencoder).
        mass_key: The feature holding the jet mass (GeV).
        mass_range: ``(low, high)`` GeV of the adversary's mass classes; masses outside go to
            the first/last class.
        mass_bins: Number of mass classes.
        adversary_hidden: Width of the adversary's two hidden layers.
        adversary_learning_rate: Adam learning rate of the adversary.
        **kwargs: :class:`Autoencoder` arguments.
    """

    def __init__(self, *, adversary_weight: float = 1.0, mass_key: str = "mass",
                 mass_range: Sequence[float] = (0.0, 600.0), mass_bins: int = 10, adversary_hidden: int = 64,
                 adversary_learning_rate: float = 1e-3, **kwargs):
        if len(mass_range) != 2 or not mass_range[0] < mass_range[1] or int(mass_bins) < 2:
            raise ValueError("mass_range must be (low, high) with low < high and mass_bins ≥ 2. "
                             f"Received: mass_range={mass_range!r}, mass_bins={mass_bins}")
        if not float(adversary_weight) >= 0:
            raise ValueError(f"adversary_weight must be ≥ 0. Received: {adversary_weight}")
        super().__init__(**kwargs)
        self.adversary_weight, self.mass_key = float(adversary_weight), mass_key
        self.mass_range, self.mass_bins = (float(mass_range[0]), float(mass_range[1])), int(mass_bins)
        self.adversary_hidden, self.adversary_learning_rate = int(adversary_hidden), float(adversary_learning_rate)
        self.adversary = _adversary(self.mass_bins, self.adversary_hidden)
        self.adversary_tracker = keras.metrics.Mean(name="adversary_loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")

    compiled_optimizers = ("optimizer", "adversary_optimizer")

    def compile(self, optimizer="adam", adversary_optimizer=None, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.adversary_optimizer = adversary_optimizer or keras.optimizers.Adam(self.adversary_learning_rate)
        self.adversary_optimizer.build(self.adversary.trainable_variables)

    @property
    def autoencoder_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.adversary_tracker]

    def _mass_class(self, features):
        mass = tf.reshape(tf.cast(features[self.mass_key], tf.float32), [-1])
        low, high = self.mass_range
        index = tf.floor((mass - low) / (high - low) * self.mass_bins)
        return tf.cast(tf.clip_by_value(index, 0, self.mass_bins - 1), tf.int32)

    def _adversary_loss(self, errors, mass_class, training: bool):
        logits = self.adversary(tf.math.log(errors[:, None] + 1e-8), training=training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=mass_class, logits=logits))

    def train_step(self, data):
        features = _features(data)
        if not isinstance(features, dict) or self.mass_key not in features:
            raise KeyError(f"MassDecorrelatedAutoencoder needs the feature '{self.mass_key}' beside "
                           f"'{self.input_key}'. Add it to the samples' keys.")
        x, mass_class = self._input(features), self._mass_class(features)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        errors = tf.stop_gradient(self._errors(x, False))
        with tf.GradientTape() as tape:
            adv = self._adversary_loss(errors, mass_class, True)
            scaled = adv / replicas
        grads = tape.gradient(scaled, self.adversary.trainable_variables)
        self.adversary_optimizer.apply(grads, self.adversary.trainable_variables)
        with tf.GradientTape() as tape:
            errors = self._errors(x, True)
            reconstruction = tf.reduce_mean(errors)
            adv = self._adversary_loss(errors, mass_class, False)
            loss = reconstruction - self.adversary_weight * adv
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.autoencoder_variables)
        self.optimizer.apply(grads, self.autoencoder_variables)
        return self._track(loss, reconstruction, adv)

    def test_step(self, data):
        features = _features(data)
        x = self._input(features)
        errors = self._errors(x, False)
        adv = self._adversary_loss(errors, self._mass_class(features), False)
        reconstruction = tf.reduce_mean(errors)
        return self._track(reconstruction - self.adversary_weight * adv, reconstruction, adv)

    def _track(self, loss, reconstruction, adv):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.adversary_tracker.update_state(adv)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "adversary_weight": self.adversary_weight, "mass_key": self.mass_key,
                "mass_range": list(self.mass_range), "mass_bins": self.mass_bins,
                "adversary_hidden": self.adversary_hidden, "adversary_learning_rate": self.adversary_learning_rate}


def adversarial_autoencoder(*, input_shape: Sequence[int], latent_dim: int = 6, architecture: str = "conv",
                            adversary_weight: float = 1.0, mass_key: str = "mass",
                            mass_range: Sequence[float] = (0.0, 600.0), mass_bins: int = 10,
                            hidden: Sequence[int] = (512, 128, 32), filters: Sequence[int] = (16, 32),
                            dense: int = 64, input_key: str = "image", input_scale: float = 1.0,
                            name: str = "adversarial_autoencoder") -> MassDecorrelatedAutoencoder:
    """A :class:`MassDecorrelatedAutoencoder` (factory for configs)."""
    return MassDecorrelatedAutoencoder(input_shape=input_shape, latent_dim=latent_dim, architecture=architecture,
                                       adversary_weight=adversary_weight, mass_key=mass_key, mass_range=mass_range,
                                       mass_bins=mass_bins, hidden=hidden, filters=filters, dense=dense,
                                       input_key=input_key, input_scale=input_scale, name=name)
