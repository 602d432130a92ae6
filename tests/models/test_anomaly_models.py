"""Anomaly models: PCA is exact, autoencoders learn, the VAE's ELBO, the adversary, label proportions."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow import models
from hepflow.models.label_proportions import proportion_loss



def _blobs(n: int, *, seed: int, spread: float = 1.5, size: int = 8) -> np.ndarray:
    """Images with one Gaussian blob at a random position: a low-dimensional family."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(2, size - 3, (2, n))
    img = np.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / (2 * spread**2))
    return img[..., None].astype("float32")


def _dataset(x, extra=None, batch=32):
    features = {"image": x, **(extra or {})}
    return tf.data.Dataset.from_tensor_slices((features, np.zeros(len(x), "float32"))).batch(batch)


def _roundtrip(model, features, tmp_path):
    path = str(tmp_path / f"{model.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded.score(features)), np.asarray(model.score(features)), rtol=1e-5)
    return loaded


def test_pca_equals_numpy_principal_components(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 4, 4, 1)).astype("float32")
    x[..., 0] += np.linspace(0, 3, 16).reshape(4, 4)  # a mean to subtract
    model = models.pca(input_shape=(4, 4, 1), components=3)
    model.compile()
    model.fit(_dataset(x, batch=64), epochs=1, verbose=0)
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    recon = (flat - mean) @ vt[:3].T @ vt[:3] + mean
    expected = ((flat - recon) ** 2).mean(1)
    np.testing.assert_allclose(np.asarray(model.score({"image": x})), expected, rtol=1e-3, atol=1e-5)
    _roundtrip(model, {"image": x[:10]}, tmp_path)
    with pytest.raises(ValueError, match="components must be in"):
        models.pca(input_shape=(4, 4, 1), components=17)


@pytest.mark.parametrize("factory", [models.dense_autoencoder, models.conv_autoencoder])
def test_autoencoders_learn_the_background_and_flag_the_anomaly(factory, tmp_path):
    keras.utils.set_random_seed(1)
    background = _blobs(512, seed=1)
    anomaly = _blobs(64, seed=2, spread=0.5)  # narrower blobs: never seen in training
    kwargs = {"hidden": (64, 16)} if factory is models.dense_autoencoder else {"filters": (8,), "dense": 32}
    model = factory(input_shape=(8, 8, 1), latent_dim=3, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(_dataset(background), epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]
    s_bkg = np.asarray(model.score({"image": _blobs(64, seed=3)}))
    s_sig = np.asarray(model.score({"image": anomaly}))
    assert np.median(s_sig) > 2 * np.median(s_bkg)
    _roundtrip(model, {"image": anomaly[:5]}, tmp_path)


def test_bad_autoencoder_arguments():
    model = models.dense_autoencoder(input_shape=(8, 8, 1), hidden=(16,))
    with pytest.raises(KeyError, match="reads the feature 'image'"):
        model.score({"constituents": np.zeros((2, 8, 8, 1), "float32")})
    with pytest.raises(ValueError, match="architecture must be"):
        models.autoencoders.Autoencoder(input_shape=(8, 8, 1), architecture="rnn")
    with pytest.raises(ValueError, match="multiples of 4"):
        models.conv_autoencoder(input_shape=(10, 10, 1), filters=(8, 8))


def test_vae_elbo_terms_and_scores(tmp_path):
    keras.utils.set_random_seed(2)
    x = _blobs(512, seed=4)
    model = models.vae(input_shape=(8, 8, 1), latent_dim=3, architecture="dense", hidden=(64, 16), beta=0.5,
                       score="elbo")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(_dataset(x), epochs=10, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert min(history["kl"]) >= 0
    np.testing.assert_allclose(history["loss"][-1], history["reconstruction"][-1] + 0.5 * history["kl"][-1],
                               rtol=1e-4)
    # σ² follows the reconstruction error (its maximum-likelihood value)
    mse = float(np.mean((np.asarray(model({"image": x})) - x) ** 2))
    assert 0.2 < float(model.sigma2.numpy()) / mse < 5
    anomaly = _blobs(64, seed=5, spread=0.5)
    assert np.median(np.asarray(model.score({"image": anomaly}))) > np.median(np.asarray(model.score({"image": x[:64]})))
    loaded = _roundtrip(model, {"image": anomaly[:5]}, tmp_path)
    assert loaded.score_name == "elbo" and loaded.beta == 0.5
    with pytest.raises(ValueError, match="score must be"):
        models.vae(input_shape=(8, 8, 1), score="likelihood")


def test_mass_decorrelated_autoencoder_step(tmp_path):
    keras.utils.set_random_seed(3)
    x = _blobs(128, seed=6)
    mass = np.random.default_rng(0).uniform(0, 500, 128).astype("float32")
    model = models.adversarial_autoencoder(input_shape=(8, 8, 1), latent_dim=3, architecture="dense",
                                           hidden=(32,), adversary_weight=2.0, mass_range=(0, 500), mass_bins=5)
    model.compile(optimizer="adam")
    before_ae = [v.numpy().copy() for v in model.encoder.trainable_variables]
    before_adv = [v.numpy().copy() for v in model.adversary.trainable_variables]
    logs = model.fit(_dataset(x, {"mass": mass}), epochs=1, verbose=0).history
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before_ae, model.encoder.trainable_variables))
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before_adv, model.adversary.trainable_variables))
    np.testing.assert_allclose(logs["loss"][-1], logs["reconstruction"][-1] - 2.0 * logs["adversary_loss"][-1],
                               rtol=1e-4)
    np.testing.assert_array_equal(model._mass_class({"mass": np.array([-5.0, 50.0, 499.0, 900.0])}), [0, 0, 4, 4])
    _roundtrip(model, {"image": x[:5], "mass": mass[:5]}, tmp_path)
    with pytest.raises(KeyError, match="needs the feature 'mass'"):
        model.train_step(({"image": x[:4]}, np.zeros(4)))


def test_proportion_loss_matches_its_definition():
    fractions = np.array([[0.2], [0.2], [0.2], [0.7]], "float32")
    predictions = np.array([[0.1], [0.3], [0.5], [0.6]], "float32")
    m1, m2 = 0.3, 0.6
    bce = lambda f, m: -(f * np.log(m) + (1 - f) * np.log(1 - m))  # noqa: E731
    expected = 0.75 * bce(0.2, m1) + 0.25 * bce(0.7, m2)
    np.testing.assert_allclose(float(proportion_loss(fractions, predictions)), expected, rtol=1e-5)


def test_label_proportions_learn_a_classifier_without_labels(tmp_path):
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(0)
    n = 4000
    truth = rng.random(n) < np.where(np.arange(n) < n // 2, 0.2, 0.8)  # two mixtures: 20 % and 80 % signal
    feature = rng.normal(np.where(truth, 1.5, -1.5), 1.0).astype("float32")
    fractions = np.where(np.arange(n) < n // 2, 0.2, 0.8).astype("float32")[:, None]
    order = rng.permutation(n)
    ds = tf.data.Dataset.from_tensor_slices(({"x": feature[order]}, fractions[order])).batch(200)
    model = models.label_proportions(classifier="high_level_dnn", classifier_args={"features": ["x"], "hidden": [16]})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(ds, epochs=10, verbose=0)
    from hepflow.evaluation.metrics import auc

    test_truth = rng.random(2000) < 0.5
    test_x = rng.normal(np.where(test_truth, 1.5, -1.5), 1.0).astype("float32")
    scores = np.asarray(model({"x": test_x}))[:, 0]
    assert auc(test_truth, scores) > 0.85  # the optimal (supervised) AUC here is 0.983
    path = str(tmp_path / "llp.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)({"x": test_x[:10]})),
                               np.asarray(model({"x": test_x[:10]})), rtol=1e-6)


def test_vae_likelihood_and_kl_match_their_textbook_forms():
    from scipy.stats import norm

    from hepflow.models.vae import gaussian_nll, kl_to_standard_normal

    rng = np.random.default_rng(5)
    x, mean = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    sigma2 = 0.7
    want = -norm.logpdf(x, loc=mean, scale=np.sqrt(sigma2)).sum(axis=(1, 2))
    np.testing.assert_allclose(gaussian_nll(tf.constant(x), tf.constant(mean), sigma2, event_axes=[1, 2]), want,
                               rtol=1e-10)
    mu, std = rng.normal(size=(6, 2)), rng.uniform(0.2, 2.0, size=(6, 2))
    # KL(q ‖ p) = E_q[log q − log p], estimated with 400k samples per example
    z = mu[:, None, :] + std[:, None, :] * rng.normal(size=(6, 400_000, 2))
    mc = (norm.logpdf(z, mu[:, None, :], std[:, None, :]) - norm.logpdf(z)).sum(-1).mean(-1)
    np.testing.assert_allclose(kl_to_standard_normal(tf.constant(mu), tf.constant(std)), mc, atol=0.01)
    assert float(kl_to_standard_normal(tf.zeros((1, 3)), tf.ones((1, 3)))[0]) == 0.0
