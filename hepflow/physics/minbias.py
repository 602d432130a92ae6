"""Minimum-bias events for pileup: a pool generated once with Pythia 8, overlaid on hard events.

Experiments do not simulate 140 soft collisions for every hard one; they premix: a library of
minimum-bias events is made once and drawn from, with reuse. hepflow does the same.
:func:`generate_minbias` writes a pool of inelastic 14 TeV collisions (``SoftQCD:inelastic``,
multi-parton interactions on) as chunk files of visible final-state particles;
:class:`MinBiasPool` loads one and :meth:`MinBiasPool.overlay` draws ``N ~ Poisson(μ)`` of its
events for a hard event. Each drawn event is rotated by a random angle in φ and reflected in η
with probability ½ (the physics is symmetric in both), so an event reused many times does not
repeat the same deposits: a pool of 10,000 events (about 45 s on one core) overlaid at μ = 140
on 20,000 hard events is used 280 times over, in random orientations.

Needs the ``[pythia]`` extra (``pythia8mc``) to generate; loading a pool needs only h5py.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.metadata
import json
import os
import time
from typing import Any

import h5py
import numpy as np

from hepflow.errors import ConfigError, DataError
from hepflow.io import write_json_atomic
from hepflow.physics.chunks import generate_chunks, write_native_chunk, write_sidecar

__all__ = ["MinBiasSettings", "MinBiasPool", "generate_minbias", "minbias_chunk", "load_pool"]

_FIELDS = {"px": np.float32, "py": np.float32, "pz": np.float32, "e": np.float32, "charge": np.int8,
           "pid": np.int32}


@dataclasses.dataclass(frozen=True)
class MinBiasSettings:
    """Pythia settings of a minimum-bias pool (recorded in its manifest).

    Attributes:
        ecm_gev: Centre-of-mass energy.
        processes: ``"inelastic"`` (non-diffractive and diffractive, what a zero-bias trigger sees)
            or ``"non_diffractive"``.
    """

    ecm_gev: float = 14_000.0
    processes: str = "inelastic"

    def __post_init__(self) -> None:
        if self.processes not in ("inelastic", "non_diffractive"):
            raise ConfigError("MinBiasSettings.processes must be 'inelastic' or 'non_diffractive'. "
                              f"Received: {self.processes!r}")

    def pythia_strings(self, seed: int) -> list[str]:
        process = "SoftQCD:inelastic = on" if self.processes == "inelastic" else "SoftQCD:nonDiffractive = on"
        return [f"Beams:eCM = {self.ecm_gev}", process, "Random:setSeed = on", f"Random:seed = {seed}",
                "Print:quiet = on", "Next:numberCount = 0", "Next:numberShowEvent = 0", "Next:numberShowInfo = 0",
                "Next:numberShowProcess = 0"]


_PYTHIAS: dict = {}


def _pythia(settings: MinBiasSettings):
    key = (settings, os.getpid())
    if key not in _PYTHIAS:
        from hepflow.physics.pythia_jets import require_pythia  # circular: pythia_jets overlays pools

        p = require_pythia().Pythia("", False)
        for line in settings.pythia_strings(seed=1):
            if not p.readString(line):
                raise RuntimeError(f"Pythia rejected the setting {line!r}")
        if not p.init():
            raise RuntimeError("Pythia failed to initialize for minimum-bias events")
        _PYTHIAS[key] = p
    return _PYTHIAS[key]


def minbias_chunk(n_events: int, seed: int, settings: MinBiasSettings = MinBiasSettings()) -> dict[str, np.ndarray]:
    """``n_events`` minimum-bias events as flat particle arrays.

    Returns:
        ``px, py, pz, e`` (GeV, float32), ``charge`` (int8) and ``pid`` (int32) of every visible
        final-state particle, events one after the other, and ``offsets`` (n_events + 1,) int64:
        event ``i`` holds particles ``offsets[i]:offsets[i + 1]``.
    """
    p = _pythia(settings)
    p.rndm.init(seed)
    columns: dict[str, list] = {k: [] for k in _FIELDS}
    offsets = [0]
    while len(offsets) <= n_events:
        if not p.next():
            continue
        fs = [(q.px(), q.py(), q.pz(), q.e(), q.charge(), q.id()) for q in p.event if q.isFinal() and q.isVisible()]
        for k, v in zip(_FIELDS, zip(*fs) if fs else [()] * len(_FIELDS)):
            columns[k].extend(v)
        offsets.append(offsets[-1] + len(fs))
    out = {k: np.asarray(v, _FIELDS[k]) for k, v in columns.items()}
    out["offsets"] = np.asarray(offsets, np.int64)
    return out


def _run_chunk(job: tuple) -> dict[str, Any]:
    out_dir, index, n, seed, settings = job
    path = os.path.join(out_dir, f"minbias_{index:05d}.h5")
    t = time.perf_counter()
    arrays = minbias_chunk(n, seed, settings)
    record = {"file": os.path.basename(path), "process": "minbias", "seed": seed, "n_events": n,
              "n_particles": int(arrays["offsets"][-1]), "settings": dataclasses.asdict(settings)}
    write_native_chunk(path, arrays, {"settings": json.dumps(record["settings"])})
    write_sidecar(path, record)
    return {**record, "seconds": time.perf_counter() - t}


def generate_minbias(out_dir: str, *, n_events: int, workers: int = 2, chunk_events: int = 2000, seed: int = 1,
                     settings: MinBiasSettings = MinBiasSettings(), progress: bool = True) -> dict[str, Any]:
    """Generates a pool of ``n_events`` minimum-bias events as ``minbias_NNNNN.h5`` chunks; resumes.

    Returns:
        The manifest (also ``out_dir/manifest.json``, ``dataset: minbias``): settings, seeds,
        versions, events, mean visible particles per event, ``generated_this_run`` with ``events_per_s``.
    """
    if n_events <= 0 or chunk_events <= 0 or workers <= 0:
        raise ConfigError(f"n_events, chunk_events and workers must be > 0. Received: {n_events}, {chunk_events}, "
                          f"{workers}")
    chunks, results, elapsed = generate_chunks(
        out_dir, counts={"minbias": n_events}, chunk_size=chunk_events,
        job_for=lambda _, index, n: (out_dir, index, n, int(np.random.SeedSequence([seed, 99, index])
                                                            .generate_state(1)[0] % 900_000_000) + 1, settings),
        want_for=lambda job: {"seed": job[3], "settings": dataclasses.asdict(settings)},
        run=_run_chunk, size_key="n_events", unit="event", workers=workers, progress=progress)
    made = sum(r["n_events"] for r in results)
    manifest = {
        "dataset": "minbias", "seed": seed, "n_events": n_events, "chunk_events": chunk_events,
        "settings": dataclasses.asdict(settings),
        "versions": {pkg: importlib.metadata.version(pkg) for pkg in ("pythia8mc", "h5py", "numpy")},
        "visible_particles_per_event": sum(c["n_particles"] for c in chunks) / n_events,
        "chunks": chunks,
        "generated_this_run": {"events": made, "seconds": elapsed, "events_per_s": made / elapsed if made else None},
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return manifest


class MinBiasPool:
    """A minimum-bias pool in memory, drawn from for pileup.

    Args:
        arrays: Flat particle arrays and ``offsets`` as :func:`minbias_chunk` returns them
            (several chunks concatenated).
        source: Where the pool came from (for messages and manifests).
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, source: str = "<memory>") -> None:
        offsets = np.asarray(arrays["offsets"], np.int64)
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise DataError(f"{source}: a minimum-bias pool needs offsets 0 ≤ … increasing, one more than events. "
                            f"Received: offsets of shape {offsets.shape}")
        self.arrays = {k: np.asarray(arrays[k]) for k in _FIELDS}
        self.offsets = offsets
        self.source = source
        self.n_events = len(offsets) - 1

    def overlay(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` events drawn with replacement, each rotated in φ and reflected in η at random.

        Returns:
            Flat arrays ``px, py, pz, e`` (float64), ``charge``, ``pid`` and ``vertex``
            (int32: 1 … n, the pileup vertex each particle comes from).
        """
        events = rng.integers(0, self.n_events, n)
        angle = rng.uniform(-np.pi, np.pi, n)
        flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        sizes = self.offsets[events + 1] - self.offsets[events]
        vertex = np.repeat(np.arange(1, n + 1, dtype=np.int32), sizes)
        starts = np.repeat(self.offsets[events] - np.cumsum(sizes) + sizes, sizes)
        index = starts + np.arange(sizes.sum())
        px, py = self.arrays["px"][index].astype(np.float64), self.arrays["py"][index].astype(np.float64)
        c, s = np.cos(angle)[vertex - 1], np.sin(angle)[vertex - 1]
        return {"px": c * px - s * py, "py": s * px + c * py,
                "pz": self.arrays["pz"][index].astype(np.float64) * flip[vertex - 1],
                "e": self.arrays["e"][index].astype(np.float64), "charge": self.arrays["charge"][index],
                "pid": self.arrays["pid"][index], "vertex": vertex}


_LOADED: dict[str, MinBiasPool] = {}


def load_pool(pool_dir: str) -> MinBiasPool:
    """The pool written by :func:`generate_minbias` in ``pool_dir`` (cached per process).

    Raises:
        DataError: ``pool_dir`` holds no complete minimum-bias pool.
    """
    key = os.path.abspath(pool_dir)
    if key in _LOADED:
        return _LOADED[key]
    manifest = os.path.join(pool_dir, "manifest.json")
    try:
        with open(manifest) as f:
            info = json.load(f)
    except (OSError, ValueError):
        raise DataError(f"{pool_dir}: no minimum-bias pool here (expected manifest.json from "
                        f"`hepflow generate minbias --out {pool_dir} --events N`)") from None
    if info.get("dataset") != "minbias":
        raise DataError(f"{manifest}: not a minimum-bias pool. Received: dataset={info.get('dataset')!r}")
    files = [os.path.join(pool_dir, c["file"]) for c in info["chunks"]]
    missing = [f for f in files if not os.path.exists(f)]
    if missing or not files:
        raise DataError(f"{pool_dir}: the pool's manifest lists chunks that are not there: {missing[:3]} "
                        f"(present: {sorted(glob.glob(os.path.join(pool_dir, 'minbias_*.h5')))[:3]})")
    parts: dict[str, list] = {k: [] for k in _FIELDS}
    offsets, total = [np.zeros(1, np.int64)], 0
    for path in files:
        with h5py.File(path, "r") as f:
            for k in _FIELDS:
                parts[k].append(f[k][:])
            o = f["offsets"][:]
        offsets.append(o[1:] + total)
        total += int(o[-1])
    pool = MinBiasPool({**{k: np.concatenate(v) for k, v in parts.items()}, "offsets": np.concatenate(offsets)},
                       source=pool_dir)
    _LOADED[key] = pool
    return pool
