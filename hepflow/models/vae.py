"""A variational autoencoder for anomaly detection.

The encoder gives a diagonal Gaussian posterior q(z|x), the prior p(z) is a standard normal,
and the reconstruction likelihood p(x|z) is a Gaussian around the decoder's output with one
width σ for all pixels, set to its maximum-likelihood value — the root mean squared error of
the batch — in every training step (the "σ-VAE" of Rybkin, Daniilidis, Levine,
arXiv:2006.13202), so the balance between reconstruction and KL term adapts to the data's
scale with nothing to tune; a running average of σ² serves validation and scoring. The loss is the negative ELBO with a β-weighted KL term (β-VAE, Higgins et al. 2017):
``−E_q[log p(x|z)] + β · KL(q(z|x) ‖ p(z))``. As anomaly score, ``score="reconstruction"``
(the error of the posterior mean's reconstruction, as for a plain autoencoder) or
``score="elbo"`` (the negative ELBO, with the KL term estimated in closed form).

The Gaussian log-likelihood and the KL divergence to the prior are written in closed form
(:func:`gaussian_nll`, :func:`kl_to_standard_normal`), so the VAE needs no TensorFlow
Probability (whose ``tf-keras`` dependency would pull in the GPU build of TensorFlow beside
``tensorflow-cpu``).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from hepflow.models.autoencoders import Autoencoder, _features, reconstruction_error

__all__ = ["VariationalAutoencoder", "vae", "gaussian_nll", "kl_to_standard_normal"]

_LOG_2PI = 1.8378770664093453


def gaussian_nll(x, mean, sigma2, *, event_axes: Sequence[int]):
    """−log N(x; mean, σ²) of independent Gaussians, summed over ``event_axes`` (one value per example)."""
    # a Python number becomes x's dtype exactly (not via float32); tensors and variables are cast
    sigma2 = tf.constant(sigma2, x.dtype) if isinstance(sigma2, (int, float)) else tf.cast(sigma2, x.dtype)
    return 0.5 * tf.reduce_sum(tf.square(x - mean) / sigma2 + tf.math.log(sigma2) + _LOG_2PI, axis=event_axes)


def kl_to_standard_normal(mean, std):
    """KL(N(mean, diag std²) ‖ N(0, I)) in closed form, per example: ½ Σ (μ² + s² − 1 − 2 log s)."""
    return 0.5 * tf.reduce_sum(tf.square(mean) + tf.square(std) - 1.0 - 2.0 * tf.math.log(std), axis=-1)


@keras.saving.register_keras_serializable(package="hepflow")
class VariationalAutoencoder(Autoencoder):
    """A VAE (see the module docstring); the architecture arguments are those of :class:`Autoencoder`.

    Args:
        beta: Weight β of the KL term.
        score: ``"reconstruction"``, ``"elbo"`` (negative ELBO per example) or ``"kl"`` (the KL
            divergence of the posterior to the prior alone: how far from the bulk of the training
            data the encoder puts the example, the score the 2021 challenge's VAEs did best with).
        **kwargs: :class:`Autoencoder` arguments (``input_shape``, ``latent_dim``, ``architecture``, ...).
    """

    def __init__(self, *, beta: float = 1.0, score: str = "reconstruction", **kwargs):
        if score not in ("reconstruction", "elbo", "kl"):
            raise ValueError(f"score must be 'reconstruction', 'elbo' or 'kl'. Received: score={score!r}")
        if not float(beta) >= 0:
            raise ValueError(f"beta must be ≥ 0. Received: beta={beta}")
        super().__init__(**kwargs)
        self.beta, self.score_name = float(beta), score
        # σ² of the reconstruction likelihood (scaled input units), a running average over training batches
        self.sigma2 = self.add_weight(shape=(), initializer="ones", trainable=False, name="sigma2",
                                      aggregation="mean")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.seed_generator = keras.random.SeedGenerator(0)

    def _latent_outputs(self) -> int:
        return 2 * self.latent_dim  # posterior mean and log standard deviation

    def posterior(self, x, training=False):
        """q(z|x): the mean and standard deviation of the diagonal Gaussian (``x`` in scaled units)."""
        h = self.encoder(x, training=training)
        mean, log_std = h[:, :self.latent_dim], h[:, self.latent_dim:]
        return mean, tf.exp(tf.clip_by_value(log_std, -10.0, 5.0))

    def _terms(self, x, training: bool):
        mean_z, std_z = self.posterior(x, training)
        z = mean_z
        if training:  # reparametrized sample, from the model's own seed generator (deterministic when seeded)
            z = z + std_z * keras.random.normal(tf.shape(z), seed=self.seed_generator)
        mean = self.decoder(z, training=training)
        sigma2 = self.sigma2
        if training:  # σ² at its maximum-likelihood value for this batch
            sigma2 = tf.maximum(tf.stop_gradient(tf.reduce_mean(tf.square(x - mean))), 1e-6)
            self.sigma2.assign(0.95 * self.sigma2 + 0.05 * sigma2)
        nll = gaussian_nll(x, mean, sigma2, event_axes=list(range(1, 1 + len(self.input_shape_))))
        return nll, kl_to_standard_normal(mean_z, std_z)

    def call(self, inputs, training=False):
        return self.decoder(self.posterior(self._input(inputs), training)[0], training=training) / self.input_scale

    def sample(self, n: int, *, seed=None):
        """``n`` draws from the model: latent vectors from the standard normal prior, decoded (the
        decoder's mean, in the units of the inputs)."""
        if int(n) < 1:
            raise ValueError(f"sample needs n ≥ 1. Received: n={n}")
        z = keras.random.normal((int(n), self.latent_dim), seed=seed if seed is not None else self.seed_generator)
        return self.decoder(z, training=False) / self.input_scale

    def score(self, inputs):
        x = self._input(inputs)
        if self.score_name == "reconstruction":
            return reconstruction_error(x, self.decoder(self.posterior(x)[0], training=False))
        nll, kl = self._terms(x, False)
        return kl if self.score_name == "kl" else nll + kl

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def _negative_elbo(self, nll, kl):
        return tf.reduce_mean(nll) + self.beta * tf.reduce_mean(kl)

    def train_step(self, data):
        x = self._input(_features(data))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            nll, kl = self._terms(x, True)
            loss = self._negative_elbo(nll, kl)
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._track(loss, nll, kl)

    def test_step(self, data):
        nll, kl = self._terms(self._input(_features(data)), False)
        return self._track(self._negative_elbo(nll, kl), nll, kl)

    def _track(self, loss, nll, kl):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(tf.reduce_mean(nll))
        self.kl_tracker.update_state(tf.reduce_mean(kl))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "score": self.score_name}


def vae(*, input_shape: Sequence[int], latent_dim: int = 6, architecture: str = "conv", beta: float = 1.0,
        score: str = "reconstruction", hidden: Sequence[int] = (512, 128, 32), filters: Sequence[int] = (16, 32),
        dense: int = 64, input_key: str = "image", input_scale: float = 1.0, name: str = "vae") -> VariationalAutoencoder:
    """A :class:`VariationalAutoencoder` (factory for configs)."""
    return VariationalAutoencoder(input_shape=input_shape, latent_dim=latent_dim, architecture=architecture,
                                  beta=beta, score=score, hidden=hidden, filters=filters, dense=dense,
                                  input_key=input_key, input_scale=input_scale, name=name)
