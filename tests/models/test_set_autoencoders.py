"""Set autoencoders of whole events: permutation invariance, padding ignored, save/reload, training, VAE scores."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.models import set_autoencoder, vae
from hepflow.ops.events import event_features
from tests.data.formats.test_challenge_events import hepflow_events


@pytest.fixture(scope="module")
def events():
    ev = hepflow_events(64, 4)
    return event_features(ev["objects"], ev["object_type"], ev["object_tags"])


@pytest.mark.parametrize("encoder", ["deep_sets", "transformer"])
def test_encoder_sees_a_set(events, encoder, tmp_path):
    keras.utils.set_random_seed(1)
    model = set_autoencoder(encoder=encoder)
    x = events[:4].numpy()
    z = model.encoder(x).numpy()
    # swapping two real jets changes nothing; what sits in a padded slot is never read
    jets = [k for k in range(13, 23) if x[0, k, 0] and x[0, k + 1 if k < 22 else k, 0]]
    y = x.copy()
    if len(jets) >= 2:
        y[0, [jets[0], jets[1]]] = y[0, [jets[1], jets[0]]]
    empty = np.flatnonzero(y[1, :, 0] == 0)
    y[1, empty, 1:] = 7.0  # garbage in empty slots (their `real` flag stays 0)
    np.testing.assert_allclose(model.encoder(y).numpy(), z, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).score({"event": x}).numpy(),
                               model.score({"event": x}).numpy(), rtol=1e-6)


def test_training_lowers_the_reconstruction_error(events):
    keras.utils.set_random_seed(2)
    model = set_autoencoder(encoder="deep_sets")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = tf.data.Dataset.from_tensor_slices(({"event": events}, tf.zeros(len(events)))).batch(16)
    before = float(np.mean(model.score({"event": events})))
    model.fit(ds, epochs=30, verbose=0)
    assert float(np.mean(model.score({"event": events}))) < 0.5 * before


def test_vae_scores_and_bad_shapes(events):
    model = vae(input_shape=[23, 12], architecture="transformer", latent_dim=4, hidden=[32, 16], input_key="event",
                score="kl")
    kl = model.score({"event": events[:5]}).numpy()
    assert kl.shape == (5,) and np.all(kl >= 0)
    model.score_name = "reconstruction"
    assert np.all(model.score({"event": events[:5]}).numpy() >= 0)
    with pytest.raises(ValueError, match="reads sets"):
        set_autoencoder(input_shape=[23, 12, 1])
    with pytest.raises(ValueError, match="encoder must be"):
        set_autoencoder(encoder="gnn")
    with pytest.raises(ValueError, match="score must be"):
        vae(input_shape=[23, 12], architecture="deep_sets", score="kld")


def test_vae_samples_from_its_prior(events, tmp_path):
    keras.utils.set_random_seed(5)
    model = vae(input_shape=[23, 12], architecture="deep_sets", latent_dim=4, hidden=[32, 16], input_key="event")
    draws = model.sample(6, seed=1).numpy()
    assert draws.shape == (6, 23, 12) and np.all(np.isfinite(draws))
    np.testing.assert_allclose(model.sample(6, seed=1).numpy(), draws)  # seeded: the same draws
    assert not np.allclose(model.sample(6, seed=2).numpy(), draws)
    path = str(tmp_path / "vae.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).sample(6, seed=1).numpy(), draws, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n ≥ 1"):
        model.sample(0)
