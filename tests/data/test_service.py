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


WORKER = """
import sys, tensorflow as tf
svc = tf.data.experimental.service
w = svc.WorkerServer(svc.WorkerConfig(dispatcher_address=sys.argv[1]))
print("worker up", flush=True)
w.join()
"""


def test_worker_processes_without_hepflow(jet_dir, tmp_path):
    """Workers are separate Python processes that import TensorFlow only, never hepflow."""
    import os
    import subprocess
    import sys
    import time

    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, address], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == b"worker up"
        specs = [SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x", "mass"], label=0, rate=1),
                 SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x", "mass"], label=1, rate=3,
                            selection="mass > 20")]
        kw = dict(batch_size=64, seed=4, chunk_rows=128, block_rows=64, with_record_id=True, epoch="all", drop_remainder=False,
                  transform=Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0}))
        ds = make_dataset(specs, service=dispatcher.target, **kw)
        local = make_dataset(specs, **kw)
        t = time.time()
        got = {tuple(r): m for f, y in ds for r, m in zip(f[RECORD_ID].numpy(), f["mass"].numpy())}
        assert time.time() - t < 120
        ref = {tuple(r): m for f, y in local for r, m in zip(f[RECORD_ID].numpy(), f["mass"].numpy())}
        assert len(got) == len(ref) == 1200 + n_selected(jet_dir)  # every row once, none twice
        assert got.keys() == ref.keys()
        np.testing.assert_allclose([got[k] for k in ref], list(ref.values()), rtol=1e-6)
    finally:
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()
        dispatcher.stop()


def n_selected(jet_dir):
    from tests.conftest import read_key

    return sum(int((read_key(jet_dir / f"top_{i}.h5", "mass") > 20).sum()) for i in range(2))


def test_service_reports_nonfinite_values_with_file_and_row(service, tmp_path):
    from tests.conftest import write_h5

    x = np.ones((300, 3), "f4")
    x[211, 0] = np.nan
    path = write_h5(tmp_path / "n.h5", x=x)
    ds = make_dataset([SampleSpec(name="a", files=path, keys=["x"])], batch_size=50, shuffle=0,
                      service=service)
    with pytest.raises(tf.errors.OpError, match=r"feature .{1,4}x.{1,4} in .*n\.h5.* holds NaN or Inf at row 211"):
        for _ in ds:
            pass


def test_service_rejects_what_workers_cannot_read(service, tmp_path, jet_dir):
    import h5py

    from hepflow.data import DataError

    path = tmp_path / "lzf.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.ones((100, 3), "f4"), compression="lzf", chunks=(10, 3))
    with pytest.raises(DataError, match=r"'x' in .*lzf\.h5 is chunked, compressed"):
        make_dataset([SampleSpec(name="a", files=str(path), keys=["x"])], batch_size=10, service=service)
    with pytest.raises(DataError, match="cache= cannot be combined with service="):
        make_dataset([SampleSpec(name="a", files=str(jet_dir / "qcd_0.h5"), keys=["x"])], batch_size=10,
                     cache="memory", service=service)


def test_service_compression_is_off_by_default_and_auto_gives_the_same_rows(service, specs):
    from hepflow.data import DataError
    from hepflow.data.pipeline import Pipeline

    kw = dict(batch_size=64, seed=2, chunk_rows=128, with_record_id=True, epoch="all")
    assert Pipeline(specs, service=service, **kw).service_compression is None
    plain = {tuple(r) for f, _ in make_dataset(specs, service=service, **kw) for r in f[RECORD_ID].numpy()}
    packed = {tuple(r) for f, _ in make_dataset(specs, service=service, service_compression="AUTO", **kw)
              for r in f[RECORD_ID].numpy()}
    assert plain == packed and len(plain) > 0
    with pytest.raises(DataError, match=r"service_compression must be None or 'AUTO'. Received: service_compression='zstd'"):
        make_dataset(specs, service=service, service_compression="zstd", **kw)


def test_memory_mapped_reader_keeps_dtypes_weights_and_selections(service, tmp_path):
    """float64, int16 and float32 weights, a selection that leaves runs of every length: the rows local reads give."""
    import h5py

    rng = np.random.default_rng(0)
    for i in range(2):
        with h5py.File(tmp_path / f"a_{i}.h5", "w") as f:
            f["x"] = rng.normal(size=(500, 3))
            f["n"] = np.arange(500, dtype="i2")
            f["s"] = rng.normal(size=500).astype("f4")
            f["w"] = rng.uniform(size=500).astype("f4")
    specs = [SampleSpec(name="a", files=str(tmp_path / "a_*.h5"), keys=["x", "n", "s"], weight_key="w",
                        selection="(s > -0.5) | (n > 400)")]
    kw = dict(batch_size=50, epoch="all", seed=3, with_record_id=True, chunk_rows=100, block_rows=40)

    def rows(ds):
        return {tuple(r): (x, n, w) for f, _, wt in ds
                for r, x, n, w in zip(f[RECORD_ID].numpy(), f["x"].numpy(), f["n"].numpy(), wt.numpy())}

    got, ref = rows(make_dataset(specs, service=service, **kw)), rows(make_dataset(specs, **kw))
    assert got.keys() == ref.keys() and len(ref) > 600
    for k, (x, n, w) in ref.items():
        assert got[k][0].dtype == np.float64 and got[k][1].dtype == np.int16
        np.testing.assert_array_equal(got[k][0], x)
        assert got[k][1] == n and got[k][2] == w


def test_object_lists_and_masks_through_the_service(service, tmp_path):
    """Whole events (padded object lists with masks) read by service workers: every event once, masks intact."""
    import h5py

    from hepflow.ops.events import EventFeatures
    from tests.data.formats.test_challenge_events import hepflow_events

    truth = {}
    for i in range(3):
        ev = hepflow_events(40, i)
        with h5py.File(tmp_path / f"w_{i}.h5", "w") as f:
            for k, v in ev.items():
                f[k] = v
            f["mask"] = ev["object_type"] > 0
        truth[i] = ev
    specs = [SampleSpec(name="w", files=str(tmp_path / "w_*.h5"), keys=["objects", "object_type", "object_tags", "mask"])]
    ds = make_dataset(specs, batch_size=16, epoch="all", seed=1, transform=EventFeatures(), with_record_id=True,
                      service=service)
    got = {}
    for f, _ in ds:
        for rid, mask, event in zip(f[RECORD_ID].numpy(), f["mask"].numpy(), f["event"].numpy()):
            assert tuple(rid) not in got
            got[tuple(rid)] = (mask, event)
    assert len(got) == 120
    for (_, file, row), (mask, event) in got.items():
        np.testing.assert_array_equal(mask, truth[file]["object_type"][row] > 0)
        np.testing.assert_array_equal(event[:, 0], mask)
