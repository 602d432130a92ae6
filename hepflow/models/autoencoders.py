"""Autoencoders for anomaly detection: trained on background, they fail to reconstruct what is new.

After the autoencoder studies on jet images (Farina, Nakai, Shih, arXiv:1808.08992; Heimel,
Kasieczka, Plehn, Thompson, arXiv:1808.08979): an autoencoder learns to map QCD jets back to
themselves through a narrow bottleneck (6 by default, as in the first study); the
per-jet reconstruction error is the anomaly score.

* :class:`Autoencoder` — ``architecture="dense"`` or ``"conv"`` (convolutional, for jet images),
  or, for sets stored as padded slots whose first feature is 1 for a real element (whole events
  as object lists, :mod:`hepflow.ops.events`), a permutation-invariant encoder: ``"deep_sets"``
  (a shared per-element network summed over the real elements) or ``"transformer"`` (masked
  self-attention blocks, then a mean over the real elements). Their decoder is dense and gives
  every slot back, empty ones included, so the multiplicities are reconstructed too.
* :class:`PCA` — the linear baseline: the leading principal components of the training
  images, computed exactly from moments accumulated over one pass of the pipeline.

All are Keras models with their own ``train_step`` that read the feature ``input_key``
(``"image"``) of the pipeline's ``(features, label)`` batches and ignore the label, so they
train on any mixture of samples (background only, or with signal contamination).
``model.score(features)`` gives the anomaly score per jet.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from hepflow.layers.masked_pooling import MaskedAverage, MaskedSum
from hepflow.layers.set_attention import ElementMask, MaskedSelfAttention
from hepflow.models.base import OwnStepModel

__all__ = ["ARCHITECTURES", "Autoencoder", "PCA", "conv_autoencoder", "dense_autoencoder", "pca", "set_autoencoder", "reconstruction_error"]


#: ``architecture`` values of :class:`Autoencoder`.
ARCHITECTURES = ("dense", "conv", "deep_sets", "transformer")


def reconstruction_error(x, reconstruction):
    """Mean squared error per example over all non-batch axes."""
    diff = keras.ops.reshape(x - reconstruction, (keras.ops.shape(x)[0], -1))
    return keras.ops.mean(keras.ops.square(diff), axis=1)


def _features(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _feature(features, key: str, model: str):
    """``features[key]`` (or ``features`` itself when it is a tensor), with a clear error when missing."""
    if not isinstance(features, dict):
        return features
    if key not in features:
        raise KeyError(f"Model '{model}' reads the feature '{key}'; the batch has {sorted(features)}. Check the "
                       "config's transform (jet_images makes 'image') or the model's input_key.")
    return features[key]


def _dense_decoder(input_shape, latent_dim: int, hidden: Sequence[int]) -> keras.Model:
    """z → the dense widths ``hidden`` in reverse (ReLU) → every input value, reshaped to ``input_shape``."""
    size = 1
    for d in input_shape:
        size *= int(d)
    z = keras.Input((latent_dim,), name="z")
    h = z
    for width in reversed(hidden):
        h = keras.layers.Dense(width, activation="relu")(h)
    # linear output: a ReLU output layer can die at zero and never recover
    out = keras.layers.Reshape(tuple(int(d) for d in input_shape))(keras.layers.Dense(size)(h))
    return keras.Model(z, out, name="decoder")


def _dense_coders(input_shape, latent_dim: int, hidden: Sequence[int], latent_outputs: int):
    x = keras.Input(tuple(input_shape), name="x")
    h = keras.layers.Flatten()(x)
    for width in hidden:
        h = keras.layers.Dense(width, activation="relu")(h)
    encoder = keras.Model(x, keras.layers.Dense(latent_outputs, name="latent")(h), name="encoder")
    return encoder, _dense_decoder(input_shape, latent_dim, hidden)


def _set_coders(input_shape, latent_dim: int, hidden: Sequence[int], latent_outputs: int, kind: str):
    """A permutation-invariant encoder over the real slots and a dense decoder of all slots."""
    slots, features = (int(d) for d in input_shape)
    x = keras.Input((slots, features), name="x")
    mask = ElementMask(channel=0)(x)
    width = hidden[0] if hidden else 64
    h = keras.layers.Dense(width, activation="relu")(x)
    if kind == "deep_sets":
        h = keras.layers.Dense(width, activation="relu")(h)
        pooled = MaskedSum()([h, mask])
    else:
        for _ in range(2):
            h = MaskedSelfAttention(heads=4, key_dim=max(4, width // 4), feed_forward=2 * width)([h, mask])
        pooled = MaskedAverage()([h, mask])
    for w in hidden[1:]:
        pooled = keras.layers.Dense(w, activation="relu")(pooled)
    encoder = keras.Model(x, keras.layers.Dense(latent_outputs, name="latent")(pooled), name="encoder")
    return encoder, _dense_decoder(input_shape, latent_dim, hidden)


def _conv_coders(input_shape, latent_dim: int, filters: Sequence[int], dense: int, latent_outputs: int):
    rows, cols, channels = (int(d) for d in input_shape)
    factor = 2 ** len(filters)
    if rows % factor or cols % factor:
        raise ValueError(f"The convolutional autoencoder halves the image {len(filters)} times: rows and columns must "
                         f"be multiples of {factor}. Received: input_shape={tuple(input_shape)}")
    x = keras.Input((rows, cols, channels), name="x")
    h = x
    for f in filters:
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Dense(dense, activation="relu")(keras.layers.Flatten()(h))
    encoder = keras.Model(x, keras.layers.Dense(latent_outputs, name="latent")(h), name="encoder")
    z = keras.Input((latent_dim,), name="z")
    r, c = rows // factor, cols // factor
    h = keras.layers.Dense(dense, activation="relu")(z)
    h = keras.layers.Dense(r * c * filters[-1], activation="relu")(h)
    h = keras.layers.Reshape((r, c, filters[-1]))(h)
    for f in reversed(filters):
        h = keras.layers.UpSampling2D(2)(h)
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h)
    out = keras.layers.Conv2D(channels, 3, padding="same", name="reconstruction")(h)
    return encoder, keras.Model(z, out, name="decoder")


@keras.saving.register_keras_serializable(package="hepflow")
class Autoencoder(OwnStepModel):
    """A dense or convolutional autoencoder with the reconstruction error as anomaly score.

    Args:
        input_shape: Shape of one input, e.g. ``(40, 40, 1)`` for jet images.
        latent_dim: Bottleneck dimension (6, as in the jet-image autoencoder study).
        architecture: ``"dense"`` (hidden widths ``hidden``, mirrored in the decoder) or
            ``"conv"`` (3×3 convolutions with ``filters`` channels, each followed by 2×2
            average pooling; the decoder upsamples back).
        hidden: Dense widths of the dense architecture.
        filters: Convolution channels of the conv architecture, one entry per halving.
        dense: Width of the dense layer around the conv bottleneck.
        input_key: The pipeline feature to reconstruct.
        input_scale: Inputs are multiplied by this before encoding and the error is computed
            in the scaled units. Jet images normalized to unit intensity have pixels of order
            1e-3: a scale of about the pixel count keeps the gradients well above Adam's ε.
    """

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int = 6, architecture: str = "conv",
                 hidden: Sequence[int] = (512, 128, 32), filters: Sequence[int] = (16, 32), dense: int = 64,
                 input_key: str = "image", input_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: architecture={architecture!r}")
        if architecture in ("deep_sets", "transformer") and len(input_shape) != 2:
            raise ValueError(f"architecture={architecture!r} reads sets (slots, features). Received: "
                             f"input_shape={tuple(input_shape)}")
        if int(latent_dim) < 1 or not float(input_scale) > 0:
            raise ValueError(f"latent_dim must be ≥ 1 and input_scale > 0. Received: latent_dim={latent_dim}, "
                             f"input_scale={input_scale}")
        self.input_shape_ = tuple(int(d) for d in input_shape)
        self.latent_dim, self.architecture = int(latent_dim), architecture
        self.hidden, self.filters, self.dense = tuple(int(h) for h in hidden), tuple(int(f) for f in filters), int(dense)
        self.input_key, self.input_scale = input_key, float(input_scale)
        self.encoder, self.decoder = self._coders(self._latent_outputs())
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    def _latent_outputs(self) -> int:
        return self.latent_dim

    def _coders(self, latent_outputs: int):
        if self.architecture == "dense":
            return _dense_coders(self.input_shape_, self.latent_dim, self.hidden, latent_outputs)
        if self.architecture in ("deep_sets", "transformer"):
            return _set_coders(self.input_shape_, self.latent_dim, self.hidden, latent_outputs, self.architecture)
        return _conv_coders(self.input_shape_, self.latent_dim, self.filters, self.dense, latent_outputs)

    def _input(self, features):
        x = _feature(features, self.input_key, self.name)
        x = keras.ops.cast(x, "float32")
        if tuple(x.shape[1:]) != self.input_shape_ and len(x.shape) == len(self.input_shape_):
            x = keras.ops.reshape(x, (-1, *self.input_shape_))  # e.g. (batch, n, n) images without channels
        return x * self.input_scale

    def call(self, inputs, training=False):
        """The reconstruction, in the units of the inputs."""
        return self.decoder(self.encoder(self._input(inputs), training=training), training=training) / self.input_scale

    def score(self, inputs):
        """The anomaly score per example: the reconstruction error (scaled units)."""
        return self._errors(self._input(inputs), False)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _errors(self, x, training: bool):
        """Reconstruction error per example of scaled inputs ``x``."""
        return reconstruction_error(x, self.decoder(self.encoder(x, training=training), training=training))

    def _loss(self, x, training: bool):
        return keras.ops.mean(self._errors(x, training))

    def train_step(self, data):
        x = self._input(_features(data))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self._loss(x, True)
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        self.loss_tracker.update_state(self._loss(self._input(_features(data)), False))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "input_shape": list(self.input_shape_), "latent_dim": self.latent_dim,
                "architecture": self.architecture, "hidden": list(self.hidden), "filters": list(self.filters),
                "dense": self.dense, "input_key": self.input_key, "input_scale": self.input_scale}


@keras.saving.register_keras_serializable(package="hepflow")
class PCA(OwnStepModel):
    """Principal-component reconstruction: the linear baseline of the autoencoder studies.

    Training accumulates the mean and the second moments of the flattened inputs over the
    batches it sees (one epoch is enough; more epochs keep adding the same moments); the
    ``components`` leading eigenvectors of the covariance are computed exactly (``eigh``) the
    first time the model is used after new training data. The score is the mean squared
    error of the projection onto them. The training ``loss`` is that error with the components
    of the epoch before (none in the first). One device only (the moments are not all-reduced).

    Args:
        input_shape: Shape of one input.
        components: Number of principal components kept.
        input_key: The pipeline feature to reconstruct.
        input_scale: As in :class:`Autoencoder` (only the score's units change).
    """

    def __init__(self, *, input_shape: Sequence[int], components: int = 6, input_key: str = "image",
                 input_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.input_shape_ = tuple(int(d) for d in input_shape)
        self.size = 1
        for d in self.input_shape_:
            self.size *= d
        if not 1 <= int(components) <= self.size:
            raise ValueError(f"components must be in [1, {self.size}]. Received: components={components}")
        self.components, self.input_key, self.input_scale = int(components), input_key, float(input_scale)
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count", dtype="float64")
        self.sum = self.add_weight(shape=(self.size,), initializer="zeros", trainable=False, name="sum",
                                   dtype="float64")
        self.outer = self.add_weight(shape=(self.size, self.size), initializer="zeros", trainable=False,
                                     name="outer", dtype="float64")
        self.mean = self.add_weight(shape=(self.size,), initializer="zeros", trainable=False, name="mean")
        self.basis = self.add_weight(shape=(self.size, self.components), initializer="zeros", trainable=False,
                                     name="basis")
        self.stale = self.add_weight(shape=(), initializer="zeros", trainable=False, name="stale")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    def _flat(self, features):
        x = _feature(features, self.input_key, self.name)
        return keras.ops.reshape(keras.ops.cast(x, "float32"), (-1, self.size)) * self.input_scale

    def _update_basis(self):
        n = tf.maximum(self.count, 1.0)
        mean = self.sum / n
        cov = self.outer / n - tf.tensordot(mean, mean, axes=0)
        _, vectors = tf.linalg.eigh(cov)  # ascending eigenvalues
        self.mean.assign(tf.cast(mean, tf.float32))
        self.basis.assign(tf.cast(tf.reverse(vectors[:, -self.components:], axis=[1]), tf.float32))
        self.stale.assign(0.0)
        return tf.constant(0)

    def _project(self, flat, update: bool = True):
        if update:
            tf.cond(self.stale > 0, self._update_basis, lambda: tf.constant(0))
        centred = flat - self.mean
        return tf.matmul(tf.matmul(centred, self.basis), self.basis, transpose_b=True) + self.mean

    def call(self, inputs, training=False):
        flat = self._flat(inputs)
        return keras.ops.reshape(self._project(flat) / self.input_scale, (-1, *self.input_shape_))

    def score(self, inputs):
        flat = self._flat(inputs)
        return reconstruction_error(flat, self._project(flat))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def compile(self, optimizer="sgd", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)  # nothing to optimize: moments and eigh

    def train_step(self, data):
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("PCA accumulates moments on one device; train it with training.strategy: default.")
        flat = self._flat(_features(data))
        # the reported loss: the error with the components as they stood before this epoch's data
        self.loss_tracker.update_state(keras.ops.mean(reconstruction_error(flat, self._project(flat, update=False))))
        flat = tf.cast(flat, tf.float64)
        self.count.assign_add(tf.cast(tf.shape(flat)[0], tf.float64))
        self.sum.assign_add(tf.reduce_sum(flat, axis=0))
        self.outer.assign_add(tf.matmul(flat, flat, transpose_a=True))
        self.stale.assign(1.0)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        self.loss_tracker.update_state(keras.ops.mean(self.score(_features(data))))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "input_shape": list(self.input_shape_), "components": self.components,
                "input_key": self.input_key, "input_scale": self.input_scale}


def dense_autoencoder(*, input_shape: Sequence[int], latent_dim: int = 6, hidden: Sequence[int] = (512, 128, 32),
                      input_key: str = "image", input_scale: float = 1.0,
                      name: str = "dense_autoencoder") -> Autoencoder:
    """A dense :class:`Autoencoder` (factory for configs)."""
    return Autoencoder(input_shape=input_shape, latent_dim=latent_dim, architecture="dense", hidden=hidden,
                       input_key=input_key, input_scale=input_scale, name=name)


def conv_autoencoder(*, input_shape: Sequence[int], latent_dim: int = 6, filters: Sequence[int] = (16, 32),
                     dense: int = 64, input_key: str = "image", input_scale: float = 1.0,
                     name: str = "conv_autoencoder") -> Autoencoder:
    """A convolutional :class:`Autoencoder` for jet images (factory for configs)."""
    return Autoencoder(input_shape=input_shape, latent_dim=latent_dim, architecture="conv", filters=filters,
                       dense=dense, input_key=input_key, input_scale=input_scale, name=name)


def set_autoencoder(*, input_shape: Sequence[int] = (23, 12), latent_dim: int = 8, encoder: str = "deep_sets",
                    hidden: Sequence[int] = (64, 32), input_key: str = "event", input_scale: float = 1.0,
                    name: str = "set_autoencoder") -> Autoencoder:
    """An :class:`Autoencoder` of sets with a ``"deep_sets"`` or ``"transformer"`` encoder (factory for configs).

    The defaults read whole events (``event`` of the ``event_features`` transform: 23 slots of 12
    features) into a latent space of 8.
    """
    if encoder not in ("deep_sets", "transformer"):
        raise ValueError(f"encoder must be 'deep_sets' or 'transformer'. Received: encoder={encoder!r}")
    return Autoencoder(input_shape=input_shape, latent_dim=latent_dim, architecture=encoder, hidden=hidden,
                       input_key=input_key, input_scale=input_scale, name=name)


def pca(*, input_shape: Sequence[int], components: int = 6, input_key: str = "image", input_scale: float = 1.0,
        name: str = "pca") -> PCA:
    """The :class:`PCA` baseline (factory for configs)."""
    return PCA(input_shape=input_shape, components=components, input_key=input_key, input_scale=input_scale,
               name=name)
