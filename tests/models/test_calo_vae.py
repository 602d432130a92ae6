"""The conditional VAE shower generator: trains, conditions on energy and particle, reads out quanta, reloads."""
from __future__ import annotations


import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.models import calo_vae


def test_trains_conditions_and_reloads(showers, tmp_path):
    keras.utils.set_random_seed(3)
    feats, labels = showers
    model = calo_vae(particles=3, cell_quantum=0.01, hidden=(128, 64), latent_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    ds = tf.data.Dataset.from_tensor_slices((feats, labels)).shuffle(1000, seed=1).batch(60)
    history = model.fit(ds, epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]
    out = model.sample(40.0, particle=0, n=16, seed=2)
    assert [tuple(out[k].shape) for k in ("layer_0", "layer_1", "layer_2")] == [(16, 3, 96), (16, 12, 12), (16, 12, 6)]
    cells = np.concatenate([np.asarray(v).reshape(16, -1) for v in out.values()], 1)
    assert np.all(cells >= 0)
    np.testing.assert_allclose(cells / 0.01, np.round(cells / 0.01), atol=1e-3)  # multiples of the 10 MeV quantum
    # the same noise with another particle or energy gives other showers; more energy, more deposit
    pion = model.sample(40.0, particle=2, n=16, seed=2)
    assert not np.allclose(np.asarray(pion["layer_1"]), np.asarray(out["layer_1"]))
    low, high = (float(sum(np.asarray(v).sum() for v in model.sample(e, particle=0, n=64, seed=5).values()))
                 for e in (5.0, 80.0))
    assert high > 3 * low
    path = str(tmp_path / "vae.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    a, b = model.sample(20.0, particle=1, n=4, seed=7), again.sample(20.0, particle=1, n=4, seed=7)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pass `particle`"):
        model.sample(20.0, n=2)
    with pytest.raises(ValueError, match="latent_dim"):
        calo_vae(latent_dim=0)


def test_savedmodel_in_a_fresh_process_gives_the_same_showers(tmp_path, assert_same_showers_in_a_fresh_process):
    """(energy, seed, particle) → showers as a SavedModel, loaded by a process that imports TensorFlow only."""
    from hepflow.serving import export_generator

    keras.utils.set_random_seed(4)
    model = calo_vae(particles=3, cell_quantum=0.01, hidden=(64, 32), latent_dim=6)
    path = export_generator(model, str(tmp_path / "export"), name="cvae")
    assert_same_showers_in_a_fresh_process(model, path, rtol=1e-5, atol=1e-6)
