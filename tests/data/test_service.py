"""make_dataset(service=...) with a tf.data service dispatcher and two workers on localhost."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hepflow.data import RECORD_ID, Normalize, SampleSpec, make_dataset


@pytest.fixture(scope="module")
def service():
    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address)) for _ in range(2)]
    yield dispatcher.target
    for w in workers:
        w.stop()
    dispatcher.stop()


def test_two_workers_read_every_record_once(service, jet_dir):
    specs = [SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x", "mass"], label=0),
             SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x", "mass"], label=1)]
    norm = Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0})
    ds = make_dataset(specs, batch_size=64, epoch="all", seed=1, chunk_rows=128, block_rows=64,
                      transform=norm, with_record_id=True, service=service)
    local = make_dataset(specs, batch_size=64, epoch="all", seed=1, chunk_rows=128, block_rows=64,
                         transform=norm, with_record_id=True)
    for _ in range(2):  # two epochs
        got = {}
        for f, y in ds:
            assert y.shape[0] == 64
            for rid, m, label in zip(f[RECORD_ID].numpy(), f["mass"].numpy(), y.numpy()):
                assert tuple(rid) not in got
                assert label == rid[0]
                got[tuple(rid)] = m
        assert len(got) == 3200
    ref = {tuple(r): m for f, _ in local for r, m in zip(f[RECORD_ID].numpy(), f["mass"].numpy())}
    assert got.keys() == ref.keys()
    np.testing.assert_allclose([got[k] for k in ref], list(ref.values()))


def test_mixed_batches_keep_their_composition(service, specs):
    ds = make_dataset(specs, batch_size=64, seed=2, chunk_rows=128, service=service)
    labels = [y.numpy() for _, y in ds]
    assert len(labels) == 41  # the 41 batches of the shortest epoch, split between workers
    for y in labels:
        assert (y == 0).sum() == 16 and (y == 1).sum() == 48
