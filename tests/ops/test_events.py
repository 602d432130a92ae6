"""Whole events through the pipeline: padded object lists and their masks, every row once, through cache and mixing."""
from __future__ import annotations

import h5py
import numpy as np

from hepflow.data import RECORD_ID, SampleSpec, make_dataset
from hepflow.ops.events import EVENT_FEATURES, EventFeatures, event_features
from tests.data.formats.test_challenge_events import hepflow_events


def write_events(path, n, seed):
    ev = hepflow_events(n, seed)
    with h5py.File(path, "w") as f:
        for k, v in ev.items():
            f[k] = v
        f["mask"] = ev["object_type"] > 0
    return ev


def test_event_features():
    ev = hepflow_events(3, 1)
    x = event_features(ev["objects"], ev["object_type"], ev["object_tags"]).numpy()
    assert x.shape == (3, 23, len(EVENT_FEATURES))
    real = ev["object_type"] > 0
    np.testing.assert_array_equal(x[..., 0], real)
    assert np.all(x[~real] == 0)  # empty slots are all zeros
    np.testing.assert_allclose(x[..., 1][real], np.log1p(ev["objects"][..., 0][real]), rtol=1e-6)
    np.testing.assert_allclose(x[..., 3] ** 2 + x[..., 4] ** 2, real, atol=1e-6)
    np.testing.assert_array_equal(x[..., 5:10].sum(-1), real)  # one type each
    np.testing.assert_array_equal(x[..., 10], real & (ev["object_tags"] & 1 > 0))


def test_object_lists_and_masks_survive_the_pipeline(tmp_path):
    """Two processes mixed by rate, cached after the first epoch: every event once, masks intact."""
    truth = {}
    for name, seed in (("w", 1), ("qcd", 2)):
        for i in range(3):
            path = tmp_path / f"{name}_{i}.h5"
            truth[(name, i)] = write_events(path, 7 + i, seed * 10 + i)
    specs = [SampleSpec(name=n, files=[str(tmp_path / f"{n}_{i}.h5") for i in range(3)],
                     keys=["objects", "object_type", "object_tags", "mask"], label=k, rate=r)
             for k, (n, r) in enumerate((("w", 3.0), ("qcd", 1.0)))]
    for cache in (None, str(tmp_path / "cache")):
        for _ in range(2):  # the second pass reads the cache
            ds = make_dataset(specs, batch_size=5, transform=EventFeatures(), mix="sampled", epoch="all", seed=3,
                              cache=cache, with_record_id=True)
            seen = {}
            for x, y in ds:
                for rid, ev, mask in zip(x[RECORD_ID].numpy(), x["event"].numpy(), x["mask"].numpy()):
                    seen[tuple(rid)] = (ev, mask)
            assert len(seen) == sum(7 + i for i in range(3)) * 2  # every event exactly once
            for (sample, file, row), (ev, mask) in seen.items():
                src = truth[(("w", "qcd")[sample], file)]
                np.testing.assert_array_equal(mask, src["object_type"][row] > 0)
                np.testing.assert_array_equal(ev[:, 0], mask)
                np.testing.assert_allclose(ev, event_features(src["objects"][row:row + 1], src["object_type"][row:row + 1],
                                                              src["object_tags"][row:row + 1]).numpy()[0], rtol=1e-6)
    # a training epoch in proportion to the rates: w 3 : qcd 1
    ds = make_dataset(specs, batch_size=8, mix="sampled", epoch=200, seed=1)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert abs((labels == 0).mean() - 0.75) < 0.05
