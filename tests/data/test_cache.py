"""The cache after the first epoch: memory, disk, auto; atomic publication; invalidation."""
from __future__ import annotations

import os

import numpy as np
import pytest

from hepflow.data import RECORD_ID, DataError, Normalize, SampleSpec
from hepflow.data.pipeline import Pipeline


def count_raw_reads(pipe: Pipeline) -> list[int]:
    calls = [0]
    original = pipe.reader.read

    def read(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    pipe.reader.read = read
    return calls


def by_id(ds):
    out = {}
    for f, _ in ds:
        for rid, m in zip(f[RECORD_ID].numpy(), f["mass"].numpy()):
            out[tuple(rid)] = m
    return out


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_second_epoch_is_served_from_the_cache(specs, tmp_path, cache):
    norm = Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0})
    target = "memory" if cache == "memory" else str(tmp_path / "cache")
    pipe = Pipeline(specs, batch_size=64, transform=norm, cache=target, epoch="all", seed=1,
                    with_record_id=True, chunk_rows=256, block_rows=64)
    reads = count_raw_reads(pipe)
    first = by_id(pipe.dataset)
    n_first = reads[0]
    assert n_first > 0 and pipe.cache.complete(0) and pipe.cache.complete(1)
    second = by_id(pipe.dataset)
    assert reads[0] == n_first  # no HDF5 read in the cached epoch
    assert first.keys() == second.keys() and len(first) == 3200
    for k, v in first.items():
        assert second[k] == v
    if cache == "disk":
        published = os.listdir(pipe.cache.location)
        assert sorted(published) == ["qcd", "top"]  # no temporary folder left behind
        assert sorted(os.listdir(os.path.join(pipe.cache.location, "top"))) == ["mass.npy", "meta.json", "x.npy"]


def test_disk_cache_is_reused_by_a_new_pipeline_and_invalidated_by_changes(specs, tmp_path, jet_dir):
    cache = str(tmp_path / "cache")
    norm = Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0})
    kw = dict(batch_size=64, cache=cache, epoch="all", seed=1, with_record_id=True)
    p1 = Pipeline(specs, transform=norm, **kw)
    ref = by_id(p1.dataset)
    p2 = Pipeline(specs, transform=norm, **kw)
    assert p2.cache.complete(0) and p2.cache.complete(1) and p2.cache.location == p1.cache.location
    reads = count_raw_reads(p2)
    assert by_id(p2.dataset) == ref and reads[0] == 0
    # a different transform configuration → a different cache
    p3 = Pipeline(specs, transform=Normalize(offsets={"mass": 0.0}, scales={"mass": 50.0}), **kw)
    assert p3.cache.location != p1.cache.location and not p3.cache.complete(0)
    # a changed input file (new mtime) → a different cache
    path = str(jet_dir / "qcd_0.h5")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        p4 = Pipeline(specs, transform=norm, **kw)
        assert p4.cache.location != p1.cache.location and not p4.cache.complete(0)
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_interrupted_first_epoch_leaves_no_usable_cache(specs, tmp_path):
    cache = str(tmp_path / "cache")
    kw = dict(batch_size=64, cache=cache, epoch="all", seed=1, chunk_rows=128, block_rows=64,
              num_readers=1, prefetch=1)
    p1 = Pipeline(specs, **kw)
    it = iter(p1.dataset)
    for _ in range(3):
        next(it)
    del it
    assert not p1.cache.complete(0) and not p1.cache.complete(1)
    assert all(".tmp-" in n for n in os.listdir(p1.cache.location))  # only unpublished data
    p2 = Pipeline(specs, **kw)
    assert not p2.cache.complete(0) and not p2.cache.complete(1)
    reads = count_raw_reads(p2)
    n = sum(int(y.shape[0]) for _, y in p2.dataset)
    assert n == 3200 and reads[0] > 0 and p2.cache.complete(0) and p2.cache.complete(1)


def test_stale_temporary_folders_of_dead_processes_are_removed(specs, tmp_path):
    p = Pipeline(specs, batch_size=64, cache=str(tmp_path / "c"), epoch="all")
    stale = os.path.join(p.cache.location, ".qcd.tmp-999999999-deadbeef")
    os.makedirs(stale)
    Pipeline(specs, batch_size=64, cache=str(tmp_path / "c"), epoch="all")
    assert not os.path.exists(stale)


def test_shortest_epoch_completes_the_larger_sample_cache_over_epochs(specs):
    pipe = Pipeline(specs, batch_size=64, cache="memory", seed=3, chunk_rows=128, block_rows=64)
    for epoch in range(12):
        for _ in pipe.dataset:
            pass
        if pipe.cache.complete(0):
            break
    # Each shortest epoch reads 41 × 48 of top's 2000 rows and 41 × 16 of qcd's 1200;
    # reshuffled epochs draw the remaining blocks until both caches are complete.
    assert epoch > 0 and pipe.cache.complete(0) and pipe.cache.complete(1)


def test_auto_cache_picks_memory_or_disk_by_budget(specs, tmp_path, monkeypatch):
    monkeypatch.setenv("HEPFLOW_CACHE_DIR", str(tmp_path / "auto"))
    small = Pipeline(specs, batch_size=64, cache="auto", memory_budget=10**9)
    assert small.cache.location is None  # fits: memory
    big = Pipeline(specs, batch_size=64, cache="auto", memory_budget=1000, epoch="all")
    assert big.cache.location.startswith(str(tmp_path / "auto"))
    assert sum(int(y.shape[0]) for _, y in big.dataset) == 3200
    np.testing.assert_equal(sorted(os.listdir(big.cache.location)), ["qcd", "top"])


def test_a_disk_cache_that_does_not_fit_the_disk_is_refused_or_skipped(specs, tmp_path, monkeypatch, caplog):
    import shutil

    import hepflow.data.cache as cache_module
    from hepflow.data.cache import DiskFullError

    row_bytes = {k: np.dtype(d).itemsize * int(np.prod(s)) for k, (s, d) in
                 Pipeline(specs, batch_size=64).out_spec.items()}
    need = 3200 * sum(row_bytes.values())  # 1200 qcd + 2000 top rows

    def disk_usage_with(free):
        return lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free)

    monkeypatch.setattr(cache_module.shutil, "disk_usage", disk_usage_with(need - 1))
    with pytest.raises(DiskFullError, match=r"needs .* GB at .*c/.*Received: cache=") as info:
        Pipeline(specs, batch_size=64, cache=str(tmp_path / "c"))
    assert "['qcd', 'top']" in str(info.value)

    monkeypatch.setenv("HEPFLOW_CACHE_DIR", str(tmp_path / "auto"))
    auto = Pipeline(specs, batch_size=64, cache="auto", memory_budget=1000, epoch="all")
    assert auto.cache is None and "streaming without a cache" in caplog.text
    assert sum(int(y.shape[0]) for _, y in auto.dataset) == 3200

    monkeypatch.setattr(cache_module.shutil, "disk_usage", disk_usage_with(need))  # exactly enough
    full = Pipeline(specs, batch_size=64, cache=str(tmp_path / "c"), epoch="all")
    assert full.cache.missing_bytes == need
    for _ in full.dataset:
        pass
    assert full.cache.missing_bytes == 0
    monkeypatch.setattr(cache_module.shutil, "disk_usage", disk_usage_with(0))  # a published cache needs no room
    again = Pipeline(specs, batch_size=64, cache=str(tmp_path / "c"), epoch="all")
    assert again.cache.complete(0) and again.cache.complete(1)


def test_caches_are_listed_and_removed(specs, tmp_path, capsys):
    from hepflow.cli.main import main
    from hepflow.data import DataError
    from hepflow.data.cache import list_caches, remove_caches

    root = str(tmp_path / "c")
    pipe = Pipeline(specs, batch_size=64, cache=root, epoch="all")
    for _ in pipe.dataset:
        pass
    (record,) = list_caches(root)
    assert record["path"] == pipe.cache.location and record["samples"] == {"qcd": 1200, "top": 2000}
    arrays = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(record["path"]) for f in fs)
    assert arrays >= 3200 * 2 * 4 and record["bytes"] >= 0.9 * arrays  # x (float32, 1 column) + mass, at least
    assert main(["cache", "list", "--dir", root]) == 0
    out = capsys.readouterr().out
    assert record["name"] in out and "qcd (1,200 rows), top (2,000 rows)" in out

    with pytest.raises(DataError, match=r"No pipeline cache named \['nope'\].*caches there"):
        remove_caches(["nope"], root)
    assert main(["cache", "clear", "--dir", root]) == 2
    assert "or pass --all" in capsys.readouterr().err
    busy = os.path.join(root, "0" * 24)
    os.makedirs(os.path.join(busy, f".qcd.tmp-{os.getpid()}-abcdef12"))  # a live process filling it
    assert remove_caches(None, root) == [record["path"]]
    assert not os.path.exists(record["path"]) and os.path.isdir(busy)
    assert list_caches(root)[0]["writers"] == [os.getpid()]
    assert main(["cache", "clear", "--dir", root, "--all"]) == 0  # still busy: kept
    assert os.path.isdir(busy) and "removed 0 cache folder(s)" in capsys.readouterr().out


# -- integrity: closures and globals in the fingerprint, corrupt files moved aside and rebuilt --------------

def scaled(factor):
    def transform(features):
        return {**features, "mass": features["mass"] * factor}
    return transform


SHIFT = 0.0


def shifted(features):
    return {**features, "mass": features["mass"] + SHIFT}


def _disk_pipe(specs, cache_dir, transform, **kw):
    return Pipeline(specs, batch_size=64, transform=transform, cache=str(cache_dir), epoch="all", shuffle=0, seed=1,
                    with_record_id=True, **kw)


def _masses(pipe):
    return np.array([v for _, v in sorted(by_id(pipe.dataset).items())])


def test_closure_values_and_globals_are_part_of_the_fingerprint(specs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    two = _masses(_disk_pipe(specs, cache, scaled(2.0)))
    three = _masses(_disk_pipe(specs, cache, scaled(3.0)))  # same source, other closure value: another cache
    np.testing.assert_allclose(three, two * 1.5, rtol=1e-6)
    base = _masses(_disk_pipe(specs, cache, shifted))
    monkeypatch.setattr(f"{__name__}.SHIFT", 5.0)  # a global changed between runs
    np.testing.assert_allclose(_masses(_disk_pipe(specs, cache, shifted)), base + 5.0, rtol=1e-6)
    assert len(os.listdir(cache)) == 4


def test_a_transform_that_cannot_be_fingerprinted_is_not_disk_cached(specs, tmp_path):
    handle = open(os.devnull)  # a value no fingerprint can describe

    def reads_a_file(features):
        handle.fileno()
        return features

    try:
        with pytest.raises(DataError, match=r"`handle`, which .*reads_a_file reads from its closure.*get_config\(\)"):
            _disk_pipe(specs, tmp_path / "cache", reads_a_file)
        assert Pipeline(specs, batch_size=64, transform=reads_a_file, cache="memory").cache is not None
    finally:
        handle.close()


def _published(tmp_path, specs):
    cache = tmp_path / "cache"
    norm = Normalize(offsets={"mass": 100.0}, scales={"mass": 50.0})
    pipe = _disk_pipe(specs, cache, norm)
    ref = by_id(pipe.dataset)
    return cache, norm, ref, os.path.join(pipe.cache.location, "top")


@pytest.mark.parametrize("damage", ["truncated_npy", "garbled_meta", "overwritten_bytes"])
def test_a_corrupt_disk_cache_is_moved_aside_and_rebuilt(specs, tmp_path, damage, caplog):
    cache, norm, ref, top = _published(tmp_path, specs)
    if damage == "truncated_npy":
        with open(os.path.join(top, "x.npy"), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(top, "x.npy")) - 100)
    elif damage == "garbled_meta":
        with open(os.path.join(top, "meta.json"), "r+b") as f:
            f.seek(10)
            f.write(b"\x00garbage\x00")
    else:  # same size, bytes changed in place: only the checksum can tell
        with open(os.path.join(top, "mass.npy"), "r+b") as f:
            f.seek(os.path.getsize(os.path.join(top, "mass.npy")) - 40)
            f.write(np.full(4, 1e6, "f4").tobytes())
    with caplog.at_level("WARNING"):
        pipe = _disk_pipe(specs, cache, norm)
        reads = count_raw_reads(pipe)
        again = by_id(pipe.dataset)  # the right numbers, read from the files
    assert again.keys() == ref.keys() and all(again[k] == v for k, v in ref.items())
    assert reads[0] > 0 and "corrupt" in caplog.text
    assert [n for n in os.listdir(os.path.dirname(top)) if n.startswith(".top.corrupt-")]  # kept for a look
    rebuilt = _disk_pipe(specs, cache, norm)  # the rebuilt cache is sound and serves the same rows
    reads = count_raw_reads(rebuilt)
    third = by_id(rebuilt.dataset)
    assert third.keys() == ref.keys() and all(third[k] == v for k, v in ref.items())
    assert reads[0] == 0


def test_a_file_rewritten_with_its_old_size_and_mtime_gets_a_new_cache(specs, tmp_path, jet_dir):
    import shutil

    import h5py

    copy = tmp_path / "jets"
    shutil.copytree(jet_dir, copy)
    specs = [SampleSpec(**{**s.to_dict(), "files": str(copy / os.path.basename(s.files[0]))}) for s in specs]
    cache, norm, ref, _ = _published(tmp_path, specs)
    path = sorted(copy.glob("top_*.h5"))[0]
    st = os.stat(path)
    with h5py.File(path, "r+") as f:
        f["mass"][0] = f["mass"][0] + 50.0  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # old mtime restored
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    again = by_id(_disk_pipe(specs, cache, norm).dataset)
    changed = [k for k in ref if again[k] != ref[k]]
    assert len(changed) == 1 and again[changed[0]] == pytest.approx(ref[changed[0]] + 1.0)
