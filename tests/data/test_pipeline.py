"""make_dataset: mixing, epochs, exactly-once reading, determinism, transforms, weights, Keras."""
from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.data import RECORD_ID, DataError, Normalize, SampleSpec, make_dataset
from hepflow.data.pipeline import Pipeline
from tests.conftest import read_key, read_rows


def collect(ds):
    feats, labels = collections.defaultdict(list), []
    for f, y, *rest in ds:
        for k, v in f.items():
            feats[k].append(v.numpy())
        labels.append(y.numpy())
    return {k: np.concatenate(v) for k, v in feats.items()}, labels


def test_exact_mixing_composition_and_epoch_length(specs):
    ds = make_dataset(specs, batch_size=64, seed=0)
    # rates 1:3 at 64 → 16 qcd + 48 top; qcd has 1200 rows (75 batches), top 2000 (41): shortest = 41
    assert len(ds) == 41
    batches = [y.numpy() for _, y in ds]
    assert len(batches) == 41
    for y in batches:
        assert y.shape == (64,) and y.dtype == np.int32
        assert (y == 0).sum() == 16 and (y == 1).sum() == 48


def test_exact_mixing_at_256_gives_64_and_192(jet_dir):
    big = [SampleSpec(name=n, files=str(jet_dir / f"{n}_*.h5"), keys=["x"], label=l, rate=r)
           for n, l, r in (("qcd", 0, 1), ("top", 1, 3))]
    for _, y in make_dataset(big, batch_size=256, seed=1):
        assert np.bincount(y.numpy(), minlength=2).tolist() == [64, 192]


def test_epoch_modes(specs):
    assert len(make_dataset(specs, batch_size=64, epoch="longest")) == 75
    assert len(make_dataset(specs, batch_size=64, epoch=10)) == 10
    assert len(make_dataset(specs, batch_size=64, epoch="all", drop_remainder=False)) == 50  # 3200 rows
    assert len(make_dataset(specs, batch_size=64, epoch="all")) == 50
    assert len(make_dataset(specs, batch_size=100, epoch="all", drop_remainder=False)) == 32
    ids, _ = collect(make_dataset(specs, batch_size=64, epoch="longest", seed=3, with_record_id=True))
    rid = ids[RECORD_ID]
    # in the longest epoch the smaller sample (top, 2000 rows, 48/batch → 3600 rows) repeats
    top = rid[rid[:, 0] == 1]
    assert len(top) == 75 * 48
    assert len({tuple(r) for r in top}) == 2000


@pytest.mark.parametrize("readers", [1, 2, 4, 16])
def test_every_record_exactly_once(jet_dir, readers):
    specs = [SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x"], label=0, rate=1),
             SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x"], label=1, rate=1)]
    ds = make_dataset(specs, batch_size=50, epoch="all", drop_remainder=False, seed=readers,
                      num_readers=readers, chunk_rows=200, block_rows=64, with_record_id=True)
    feats, _ = collect(ds)
    rid = feats[RECORD_ID]
    assert len(rid) == 3200
    assert len({tuple(r) for r in rid}) == 3200
    # the row content is the row the id names: x[:, 0, 0] stamps (file seed, row)
    stamp = feats["x"][:, 0, 0]
    expected = np.where(rid[:, 0] == 0, 10, 20) + rid[:, 1]
    np.testing.assert_array_equal(stamp, expected * 100_000 + rid[:, 2])
    # exact mixing with rates matching sample sizes also reads every record once
    sized = [SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x"], label=0, rate=3),
             SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x"], label=1, rate=5)]
    feats, _ = collect(make_dataset(sized, batch_size=80, num_readers=readers, chunk_rows=160,
                                    block_rows=64, with_record_id=True, seed=1))
    assert len({tuple(r) for r in feats[RECORD_ID]}) == len(feats[RECORD_ID]) == 3200


def test_shards_split_every_epoch_into_disjoint_equal_shares(specs):
    """Three workers' shards: equal batch counts, no record twice, together (almost) the whole epoch."""
    whole = make_dataset(specs, batch_size=40, seed=3, chunk_rows=120, with_record_id=True)
    shards = [make_dataset(specs, batch_size=40, seed=3, chunk_rows=120, with_record_id=True, shard=(i, 3))
              for i in range(3)]
    assert len({len(ds) for ds in shards}) == 1
    for epoch in range(2):  # shards reshuffle in step, like the whole pipeline
        got = [collect(ds) for ds in shards]
        ids = [feats[RECORD_ID] for feats, _ in got]
        assert [len(i) for i in ids] == [len(shards[0]) * 40] * 3
        seen = [tuple(r) for i in ids for r in i]
        assert len(set(seen)) == len(seen)  # no record in two shards
        every = {tuple(r) for r in collect(whole)[0][RECORD_ID]}
        assert set(seen) <= every and len(seen) >= len(every) - 3 * 40  # at most one chunk skipped per shard
        assert all(np.mean(batch) == 0.75 for _, labels in got for batch in labels)  # exact mixing in every batch
    with pytest.raises(DataError, match="lower chunk_rows"):
        make_dataset(specs, batch_size=40, seed=3, chunk_rows=4000, shard=(1, 3))
    with pytest.raises(DataError, match="Received: shard=\\(3, 3\\)"):
        make_dataset(specs, batch_size=40, seed=3, shard=(3, 3))


def test_sampled_mixing_follows_rates(specs):
    ds = make_dataset(specs, batch_size=64, mix="sampled", epoch=200, seed=5, chunk_rows=128)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert labels.shape == (200 * 64,)
    frac = labels.mean()
    assert abs(frac - 0.75) < 0.02  # binomial σ ≈ 0.004
    per_batch = np.array([y.numpy().mean() for _, y in ds])
    assert per_batch.std() > 0.02  # compositions vary from batch to batch


def test_seeded_runs_are_identical_and_epochs_differ(specs):
    def run(seed):
        ds = make_dataset(specs, batch_size=64, seed=seed, chunk_rows=128, block_rows=64,
                          with_record_id=True, num_readers=4)
        return [collect(ds)[0][RECORD_ID] for _ in range(2)]

    a, b = run(7), run(7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])  # reshuffled each epoch
    assert not np.array_equal(a[0], run(8)[0])


def test_shuffle_zero_reads_in_file_order(jet_dir):
    spec = SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x"], label=0)
    ids = collect(make_dataset([spec], batch_size=100, shuffle=0, epoch="all", with_record_id=True))[0][RECORD_ID]
    np.testing.assert_array_equal(ids[:, 1], np.repeat([0, 1], 600))
    np.testing.assert_array_equal(ids[:, 2], np.tile(np.arange(600), 2))


def test_transform_runs_on_the_rows_named_by_record_id(specs):
    norm = Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0})
    feats, labels = collect(make_dataset(specs, batch_size=64, transform=norm, seed=2, with_record_id=True))
    rid = feats[RECORD_ID]
    for s, spec in enumerate(specs):
        for f in range(2):
            m = (rid[:, 0] == s) & (rid[:, 1] == f)
            ref = read_rows(spec, f, rid[m, 2], "mass")
            np.testing.assert_allclose(feats["mass"][m], (ref - 100.0) / 50.0, rtol=1e-6)
            np.testing.assert_array_equal(feats["x"][m], read_rows(spec, f, rid[m, 2], "x"))
    np.testing.assert_array_equal(np.concatenate(labels), rid[:, 0])  # label 0 = qcd, 1 = top


def test_transform_can_change_shapes_and_add_features(specs):
    def jet_summary(f):
        return {"sum_e": tf.reduce_sum(f["x"][..., 0], axis=1), "x2": f["x"][:, :4, :]}

    ds = make_dataset(specs, batch_size=32, transform=jet_summary, epoch=3)
    f, y = next(iter(ds))
    assert set(f) == {"sum_e", "x2"} and f["sum_e"].shape == (32,) and f["x2"].shape == (32, 4, 4)


def test_bad_transforms_are_reported(specs):
    with pytest.raises(DataError, match="rows to rows"):
        make_dataset(specs, transform=lambda f: {"s": tf.reduce_sum(f["x"])})
    with pytest.raises(DataError, match="dict"):
        make_dataset(specs, transform=lambda f: f["x"])
    with pytest.raises(DataError, match="transform failed.*KeyError"):
        make_dataset(specs, transform=lambda f: {"y": f["nope"]})


def test_weights_and_vector_labels(jet_dir, tmp_path):
    a = SampleSpec(name="sig", files=str(jet_dir / "top_0.h5"), keys=["x"], label=[0, 1], weight_key="pt")
    b = SampleSpec(name="bkg", files=str(jet_dir / "qcd_0.h5"), keys=["x"], label=[1, 0])
    ds = make_dataset([a, b], batch_size=20, seed=0, with_record_id=True)
    f, y, w = next(iter(ds))
    assert y.shape == (20, 2) and y.dtype == tf.float32 and w.shape == (20,)
    rid = f[RECORD_ID].numpy()
    sig = rid[:, 0] == 0
    np.testing.assert_array_equal(y.numpy()[sig], np.tile([0.0, 1.0], (sig.sum(), 1)))
    np.testing.assert_allclose(w.numpy()[sig], read_key(jet_dir / "top_0.h5", "pt")[rid[sig, 2]])
    np.testing.assert_array_equal(w.numpy()[~sig], 1.0)


def test_selection_keeps_only_passing_rows(jet_dir):
    spec = SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x", "mass"], label=1,
                      selection="(mass > 100) & (mass < 200)")
    ref = sum(((m > 100) & (m < 200)).sum() for m in (read_key(jet_dir / f"top_{i}.h5", "mass") for i in range(2)))
    feats, _ = collect(make_dataset([spec], batch_size=10, epoch="all", drop_remainder=False, with_record_id=True))
    assert len(feats["mass"]) == ref
    assert np.all((feats["mass"] > 100) & (feats["mass"] < 200))
    assert len({tuple(r) for r in feats[RECORD_ID]}) == ref


def test_keras_fit_on_the_pipeline(specs):
    keras.utils.set_random_seed(0)
    norm = Normalize(offsets={"mass": 150.0}, scales={"mass": 100.0})
    ds = make_dataset(specs, batch_size=64, transform=norm, seed=0, cache="memory")
    inputs = {"x": keras.Input((8, 4), name="x"), "mass": keras.Input((), name="mass")}
    h = keras.layers.Concatenate()([keras.layers.Flatten()(inputs["x"]), keras.layers.Reshape((1,))(inputs["mass"])])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(16, activation="relu")(h))
    model = keras.Model(inputs, out)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(ds, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["loss"]).all()


def test_pipeline_reports_layout(specs):
    p = Pipeline(specs, batch_size=64)
    assert [lay.n_rows for lay in p.layouts] == [1200, 2000]
    assert p.planner.counts.tolist() == [16, 48]
