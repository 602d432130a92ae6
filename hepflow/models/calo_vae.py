"""A conditional variational autoencoder that generates calorimeter showers (the "cVAE" generator).

Trained like any hepflow model on the CaloGAN-layout showers (``layer_0``, ``layer_1``,
``layer_2`` in GeV and ``energy``), conditioned on the incident energy and, with
``particles > 1``, the particle type (the sample's label). hepflow's choices:

* **Cells.** Each cell as a fraction of E, then ``u = ln(1 + x / ε)`` with ε = 10⁻⁴ (0.1 MeV per
  GeV of E), so that the 10–20 MeV tail cells and the GeV core weigh comparably; the decoder's
  softplus output is ``u`` of every cell (never negative), inverted to GeV for the showers.
* **Likelihood.** A Gaussian in ``u`` with one width σ set to its maximum-likelihood value in every
  step (the σ-VAE of :mod:`hepflow.models.vae`), plus β · KL to a standard normal prior.
* **Conditioning.** ``log(E / 1 GeV)`` (and the particle one-hot) enter the encoder and the
  decoder; sampling draws z from the prior and decodes it with the requested conditions.
* **Readout.** Generated cells are rounded to ``cell_quantum`` (GeV; hepflow's simulation
  deposits 10 MeV quanta) so that the cell values are those a readout gives; cells below half a
  quantum read zero, which sets the occupancy.

``model.generate(energy, particle=..., seed=...)`` returns showers in GeV (the interface of
:class:`~hepflow.models.CaloGAN`, so ``hepflow evaluate`` scores it the same way);
``model.sample(energy, particle, n)`` draws ``n`` showers at one energy.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.models.base import OwnStepModel, ShowerSampling
from hepflow.models.vae import gaussian_nll, kl_to_standard_normal

__all__ = ["CaloVAE", "calo_vae"]

LAYERS = tuple(CALOGAN_LAYERS.items())
_CELLS = sum(r * c for _, (r, c) in LAYERS)
_EPS = 1e-4


@keras.saving.register_keras_serializable(package="hepflow")
class CaloVAE(ShowerSampling, OwnStepModel):
    """The conditional VAE (see the module docstring).

    Args:
        latent_dim: Latent dimension (default 16).
        hidden: Dense widths of the encoder, mirrored in the decoder (default (512, 256)).
        particles: Particle types it is conditioned on (1: one particle, no input).
        beta: Weight of the KL term (default 1).
        cell_quantum: Readout quantum in GeV that generated cells are rounded to (0: none).
    """

    def __init__(self, *, latent_dim: int = 16, hidden: Sequence[int] = (512, 256), particles: int = 1,
                 beta: float = 1.0, cell_quantum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if int(latent_dim) < 1 or int(particles) < 1 or not float(beta) >= 0 or float(cell_quantum) < 0:
            raise ValueError("CaloVAE needs latent_dim ≥ 1, particles ≥ 1, beta ≥ 0 and cell_quantum ≥ 0. Received: "
                             f"latent_dim={latent_dim}, particles={particles}, beta={beta}, cell_quantum={cell_quantum}")
        self.latent_dim, self.hidden, self.particles = int(latent_dim), tuple(int(h) for h in hidden), int(particles)
        self.noise_dim = self.latent_dim  # the noise of one shower: its latent vector
        self.beta, self.cell_quantum = float(beta), float(cell_quantum)
        n_cond = 1 + (self.particles if self.particles > 1 else 0)
        x, c = keras.Input((_CELLS,), name="u"), keras.Input((n_cond,), name="conditions")
        h = keras.layers.Concatenate()([x, c])
        for width in self.hidden:
            h = keras.layers.Dense(width, activation="relu")(h)
        self.encoder = keras.Model([x, c], keras.layers.Dense(2 * self.latent_dim)(h), name="encoder")
        z, c2 = keras.Input((self.latent_dim,), name="z"), keras.Input((n_cond,), name="conditions")
        h = keras.layers.Concatenate()([z, c2])
        for width in reversed(self.hidden):
            h = keras.layers.Dense(width, activation="relu")(h)
        self.decoder = keras.Model([z, c2], keras.layers.Dense(_CELLS, activation="softplus")(h), name="decoder")
        self.sigma2 = self.add_weight(shape=(), initializer="ones", trainable=False, name="sigma2", aggregation="mean")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.built = True

    # -- conditions and the cell representation ---------------------------------
    def _conditions(self, energy, particle):
        log_e = keras.ops.log(keras.ops.reshape(keras.ops.cast(energy, "float32"), (-1, 1)))
        if self.particles == 1:
            return log_e
        if particle is None:
            raise ValueError(f"This generator is conditioned on {self.particles} particle types: pass `particle` "
                             f"(ints 0 … {self.particles - 1}). Received: particle=None")
        ids = keras.ops.reshape(keras.ops.cast(particle, "int32"), (-1,))
        ids = keras.ops.broadcast_to(ids, (keras.ops.shape(log_e)[0],))
        return keras.ops.concatenate([log_e, keras.ops.one_hot(ids, self.particles)], axis=-1)

    @staticmethod
    def _to_u(features, energy):
        cells = keras.ops.concatenate([keras.ops.reshape(keras.ops.cast(features[k], "float32"), (-1, r * c))
                                       for k, (r, c) in LAYERS], axis=-1)
        return keras.ops.log1p(keras.ops.maximum(cells, 0.0) / (energy * _EPS))

    def _showers(self, u, energy):
        cells = keras.ops.expm1(u) * _EPS * energy
        if self.cell_quantum > 0:
            cells = keras.ops.round(cells / self.cell_quantum) * self.cell_quantum
        out, start = {}, 0
        for k, (r, c) in LAYERS:
            out[k] = keras.ops.reshape(cells[:, start:start + r * c], (-1, r, c))
            start += r * c
        return out

    # -- sampling ---------------------------------------------------------------
    def call(self, inputs, training=False):
        """``{"energy", "noise" (batch, latent_dim)[, "particle"]}`` → showers in GeV."""
        energy = keras.ops.reshape(keras.ops.cast(inputs["energy"], "float32"), (-1, 1))
        u = self.decoder([inputs["noise"], self._conditions(energy, inputs.get("particle"))], training=training)
        return self._showers(u, energy)

    # -- training ----------------------------------------------------------------
    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def _terms(self, data, training: bool):
        features = data[0] if isinstance(data, (tuple, list)) else data
        label = data[1] if isinstance(data, (tuple, list)) and len(data) > 1 and self.particles > 1 else None
        energy = keras.ops.reshape(keras.ops.cast(features["energy"], "float32"), (-1, 1))
        u = self._to_u(features, energy)
        c = self._conditions(energy, label)
        h = self.encoder([u, c], training=training)
        mean, std = h[:, :self.latent_dim], tf.exp(tf.clip_by_value(h[:, self.latent_dim:], -10.0, 5.0))
        z = mean + std * keras.random.normal(tf.shape(mean), seed=self.seed_generator) if training else mean
        recon = self.decoder([z, c], training=training)
        sigma2 = self.sigma2
        if training:
            sigma2 = tf.maximum(tf.stop_gradient(tf.reduce_mean(tf.square(u - recon))), 1e-6)
            self.sigma2.assign(0.95 * self.sigma2 + 0.05 * sigma2)
        nll = gaussian_nll(u, recon, sigma2, event_axes=[1])
        kl = kl_to_standard_normal(mean, std)
        return tf.reduce_mean(nll) + self.beta * tf.reduce_mean(kl), nll, kl

    def _track(self, loss, nll, kl):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(tf.reduce_mean(nll))
        self.kl_tracker.update_state(tf.reduce_mean(kl))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, nll, kl = self._terms(data, True)
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._track(loss, nll, kl)

    def test_step(self, data):
        return self._track(*self._terms(data, False))

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": list(self.hidden),
                "particles": self.particles, "beta": self.beta, "cell_quantum": self.cell_quantum}


def calo_vae(*, latent_dim: int = 16, hidden: Sequence[int] = (512, 256), particles: int = 1, beta: float = 1.0,
             cell_quantum: float = 0.0, name: str = "calo_vae") -> CaloVAE:
    """A :class:`CaloVAE` (factory for configs)."""
    return CaloVAE(latent_dim=latent_dim, hidden=hidden, particles=particles, beta=beta, cell_quantum=cell_quantum,
                   name=name)
