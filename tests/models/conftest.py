"""Fixtures shared by the shower-generator tests."""
from __future__ import annotations

import glob
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(scope="session")
def showers(calo_dir):
    """The simulated e+, γ and π+ showers of ``calo_dir`` as arrays, with the particle label (0, 1, 2)."""
    feats = {k: [] for k in ("layer_0", "layer_1", "layer_2", "energy")}
    labels = []
    for label, particle in enumerate(("eplus", "gamma", "piplus")):
        for path in sorted(glob.glob(str(calo_dir / f"{particle}_*.h5"))):
            with h5py.File(path) as f:
                for k in feats:
                    feats[k].append(f[k][...])
                labels.append(np.full(len(f["energy"]), label))
    return {k: np.concatenate(v).astype(np.float32) for k, v in feats.items()}, np.concatenate(labels)


@pytest.fixture
def assert_same_showers_in_a_fresh_process():
    """``check(model, path, rtol, atol)``: the SavedModel at ``path``, loaded by a process that imports
    TensorFlow only, gives for energies 5, 20, 60 GeV, particles 0, 1, 2 and seed 11 the showers
    ``model`` makes from the same stateless noise."""
    def check(model, path: str, *, rtol: float, atol: float) -> None:
        energy = np.array([[5.0], [20.0], [60.0]], np.float32)
        noise = tf.random.stateless_normal((3, model.noise_dim), seed=tf.constant([11, 0], tf.int64))
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
            np.testing.assert_allclose(np.array(got[k]), np.asarray(expected[k]), rtol=rtol, atol=atol)
    return check
