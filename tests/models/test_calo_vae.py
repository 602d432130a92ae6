"""The conditional VAE shower generator: trains, conditions on energy and particle, reads out quanta, reloads."""
from __future__ import annotations

import glob

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.models import calo_vae


@pytest.fixture(scope="module")
def showers(calo_dir):
    feats = {k: [] for k in ("layer_0", "layer_1", "layer_2", "energy")}
    labels = []
    for label, particle in enumerate(("eplus", "gamma", "piplus")):
        for path in sorted(glob.glob(str(calo_dir / f"{particle}_*.h5"))):
            with h5py.File(path) as f:
                for k in feats:
                    feats[k].append(f[k][...])
                labels.append(np.full(len(f["energy"]), label))
    return {k: np.concatenate(v).astype(np.float32) for k, v in feats.items()}, np.concatenate(labels)


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


def test_savedmodel_in_a_fresh_process_gives_the_same_showers(tmp_path):
    """(energy, seed, particle) → showers as a SavedModel, loaded by a process that imports TensorFlow only."""
    import json
    import subprocess
    import sys

    from hepflow.serving import export_generator

    keras.utils.set_random_seed(4)
    model = calo_vae(particles=3, cell_quantum=0.01, hidden=(64, 32), latent_dim=6)
    path = export_generator(model, str(tmp_path / "export"), name="cvae")
    energy = np.array([[5.0], [20.0], [60.0]], np.float32)
    noise = tf.random.stateless_normal((3, 6), seed=tf.constant([11, 0], tf.int64))
    expected = model({"energy": energy, "noise": noise, "particle": np.array([0, 1, 2])})
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        f"gen = tf.saved_model.load({path!r}).signatures['serving_default']\n"
        "out = gen(energy=tf.constant([[5.0], [20.0], [60.0]]), seed=tf.constant(11, tf.int64),"
        " particle=tf.constant([0, 1, 2], tf.int64))\n"
        "print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))\n"
        "assert 'hepflow' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for k in ("layer_0", "layer_1", "layer_2"):
        np.testing.assert_allclose(np.array(got[k]), np.asarray(expected[k]), rtol=1e-5, atol=1e-6)
