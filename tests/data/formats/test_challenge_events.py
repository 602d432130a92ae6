"""The 2021 challenge's event layout: written and read back, and read by the TF transform the same way."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf

from hepflow.data.formats import read_challenge, write_challenge
from hepflow.errors import DataError
from hepflow.ops.events import challenge_objects


def hepflow_events(n=5, seed=0):
    """Events in hepflow's slots: MET, 0-4 e, 0-4 μ, 0-4 γ, 0-10 jets, with tags."""
    rng = np.random.default_rng(seed)
    objects, types = np.zeros((n, 23, 3), np.float32), np.zeros((n, 23), np.int8)
    tags = np.zeros((n, 23), np.int8)
    for i in range(n):
        start = 0
        for code, slots in ((1, 1), (2, 4), (3, 4), (5, 4), (4, 10)):
            k = 1 if code == 1 else rng.integers(0, slots + 1)
            pt = np.sort(rng.exponential(40, k))[::-1] + 5
            objects[i, start:start + k] = np.stack([pt, rng.uniform(-2.5, 2.5, k) * (code != 1),
                                                    rng.uniform(-np.pi, np.pi, k)], 1)
            types[i, start:start + k] = code
            if code == 4:
                tags[i, start:start + k] = rng.integers(0, 4, k)
            start += slots
    return {"objects": objects, "object_type": types, "object_tags": tags}


def test_round_trip_keeps_met_leptons_and_jets(tmp_path):
    ev = hepflow_events()
    path = str(tmp_path / "events.h5")
    write_challenge(path, ev)
    with h5py.File(path) as f:
        p = f["Particles"][...]
    assert p.shape == (5, 19, 4) and p.dtype == np.float32
    assert set(np.unique(p[:, 0, 3])) == {1} and set(np.unique(p[:, 1:5, 3])) <= {0, 2}
    assert set(np.unique(p[:, 5:9, 3])) <= {0, 3} and set(np.unique(p[:, 9:, 3])) <= {0, 4}
    back = read_challenge(path)
    photons = slice(9, 13)
    keep = np.ones(23, bool)
    keep[photons] = False
    np.testing.assert_array_equal(back["objects"][:, keep], ev["objects"][:, keep])
    np.testing.assert_array_equal(back["object_type"][:, keep], ev["object_type"][:, keep])
    assert not back["object_type"][:, photons].any() and not back["object_tags"].any()  # no place for them
    np.testing.assert_array_equal(back["mask"], back["object_type"] > 0)
    np.testing.assert_array_equal(back["n_jets"], (ev["object_type"] == 4).sum(1))
    # the TF transform reads the same slots as the numpy reader
    tf_slots = challenge_objects(tf.constant(p))
    np.testing.assert_array_equal(tf_slots["objects"].numpy(), back["objects"])
    np.testing.assert_array_equal(tf_slots["object_type"].numpy(), back["object_type"])


def test_bad_challenge_files_are_refused(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["Particles"] = np.zeros((2, 18, 4), np.float32)
    with pytest.raises(DataError, match=r"must be \(N, 19, 4\)"):
        read_challenge(str(bad))
    p = np.zeros((2, 19, 4), np.float32)
    p[1, 6] = [30, 0.1, 0.2, 4]  # a jet in a muon slot
    with h5py.File(bad, "w") as f:
        f["Particles"] = p
    with pytest.raises(DataError, match="event 1, slot 6 has class 4"):
        read_challenge(str(bad))
    with h5py.File(bad, "w") as f:
        f["Events"] = p
    with pytest.raises(DataError, match="no 'Particles'"):
        read_challenge(str(bad))
