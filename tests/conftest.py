"""Shared fixtures: small, real HDF5 files written by the tests themselves."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import hepflow  # noqa: E402,F401  (sets the allocator before TensorFlow starts)
from hepflow.data import SampleSpec  # noqa: E402


def write_h5(path, **datasets) -> str:
    """Writes each keyword as an HDF5 dataset and returns the path."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return str(path)


def jet_arrays(n: int, seed: int, n_constituents: int = 8) -> dict[str, np.ndarray]:
    """Small jet-like arrays whose rows are unique (row i of file s has x[...,0] = s*1e5 + i)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_constituents, 4)).astype(np.float32)
    x[:, 0, 0] = seed * 100_000 + np.arange(n)  # an identity stamp for exactly-once tests
    return {"x": x, "mass": rng.uniform(0, 300, n).astype(np.float32),
            "pt": rng.uniform(550, 650, n).astype(np.float32)}


@pytest.fixture(scope="session")
def jet_dir(tmp_path_factory):
    """qcd: 2 files × 600 rows; top: 2 files × 1000 rows."""
    d = tmp_path_factory.mktemp("jets")
    for i in range(2):
        write_h5(d / f"qcd_{i}.h5", **jet_arrays(600, seed=10 + i))
        write_h5(d / f"top_{i}.h5", **jet_arrays(1000, seed=20 + i))
    return d


@pytest.fixture()
def specs(jet_dir):
    keys = {"x": "x", "mass": "mass"}
    return [SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=keys, label=0, rate=1),
            SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=keys, label=1, rate=3)]


def read_rows(spec: SampleSpec, file_index: int, rows: np.ndarray, key: str) -> np.ndarray:
    """Reference: rows of one file of a sample, read directly with h5py."""
    with h5py.File(spec.resolve_files()[file_index], "r") as f:
        return f[spec.keys[key]][...][rows]


def read_key(path, key: str) -> np.ndarray:
    """Reference: a whole dataset read with h5py."""
    with h5py.File(path, "r") as f:
        return f[key][...]


@pytest.fixture(scope="session")
def pythia_jets_dir(tmp_path_factory):
    """Real Pythia 8 + FastJet top and QCD jets: 120 + 120 in 10 files per class (about 15 s)."""
    pytest.importorskip("pythia8mc")
    from hepflow.physics.pythia_jets import generate_top_tagging

    d = tmp_path_factory.mktemp("pythia_jets")
    generate_top_tagging(str(d), n_jets=240, workers=2, chunk_jets=12, seed=1, progress=False)  # = demo --jets 240
    return d


@pytest.fixture(scope="session")
def calo_dir(tmp_path_factory):
    """Simulated CaloGAN-layout showers: 240 e+, γ and π+ each, in 6 files per particle (seconds)."""
    from hepflow.physics.calo_generate import generate_calo_showers

    d = tmp_path_factory.mktemp("calo_showers")
    generate_calo_showers(str(d), n_showers=240, chunk_showers=40, workers=1, seed=1, progress=False)
    return d


@pytest.fixture(scope="session")
def tiny_jets5_dir(tmp_path_factory):
    """Real Pythia jets with their clustering trees: quark, gluon, W, Z, top and QCD, 3 files of 6 jets
    each (the top-tagging selection, no MPI for speed; about 15 s)."""
    pytest.importorskip("pythia8mc")
    import dataclasses

    from hepflow.physics.pythia_jets import JetSettings, generate_jets

    d = tmp_path_factory.mktemp("jets5")
    settings = dataclasses.replace(JetSettings(), mpi=False, trees=True)
    generate_jets(str(d), counts={p: 18 for p in ("quark", "gluon", "w", "z", "top", "qcd")}, workers=2, chunk_jets=6,
                  seed=1, settings=settings, progress=False)
    return d


@pytest.fixture(scope="session")
def anomaly_jets_dir(tmp_path_factory):
    """Real Pythia jets in the anomaly selection (R = 1.0, 800-1000 GeV, no MPI for speed): 200 QCD,
    60 gluino and 60 top jets in files of 10 (about 20 s on 2 cores)."""
    pytest.importorskip("pythia8mc")
    import dataclasses

    from hepflow.physics.pythia_jets import ANOMALY_SETTINGS, generate_jets

    d = tmp_path_factory.mktemp("anomaly_jets")
    generate_jets(str(d), counts={"qcd": 200, "gluino": 60, "top": 60}, workers=2, chunk_jets=10, seed=1,
                  settings=dataclasses.replace(ANOMALY_SETTINGS, mpi=False), progress=False)
    return d


@pytest.fixture(scope="session")
def pileup_jets_dir(tmp_path_factory):
    """Real Pythia top and QCD jets with pileup (μ = 20, a pool of 40 minimum-bias events, no MPI for
    speed): 12 + 12 jets in 6 files per class (about 15 s)."""
    pytest.importorskip("pythia8mc")
    import dataclasses

    from hepflow.physics.minbias import generate_minbias
    from hepflow.physics.pythia_jets import JetSettings, generate_jets

    pool = tmp_path_factory.mktemp("minbias_pool")
    generate_minbias(str(pool), n_events=40, workers=1, chunk_events=40, seed=2, progress=False)
    d = tmp_path_factory.mktemp("pileup_jets")
    settings = dataclasses.replace(JetSettings(), mpi=False, pileup_mu=20.0, minbias_pool=str(pool))
    generate_jets(str(d), counts={"top": 12, "qcd": 12}, workers=2, chunk_jets=2, seed=1, settings=settings,
                  progress=False, dataset="top_tagging")
    return d


@pytest.fixture(scope="session")
def tiny_events_dir(tmp_path_factory):
    """Real Pythia events as object lists (no MPI for speed): 12 of each SM process in 6 files, 4 of each
    signal (about 20 s)."""
    pytest.importorskip("pythia8mc")
    import dataclasses

    from hepflow.physics.events import EventSettings, generate_events

    d = tmp_path_factory.mktemp("events")
    counts = {**{p: 12 for p in ("w", "z", "ttbar", "diboson", "qcd")}, "zprime": 4, "leptoquark": 4, "h_tautau": 4}
    generate_events(str(d), counts=counts, workers=2, chunk_events=2, seed=1,
                    settings=dataclasses.replace(EventSettings(), mpi=False), progress=False)
    return d
