"""A liquid-argon TPC wire readout: drift, diffusion, field and electronics response, noise, ADC.

MicroBooNE-like defaults (:class:`LArTPCSettings`, each with its source), on a sub-volume small
enough to simulate thousands of events on a laptop:

* three wire planes at the anode (x = 0): two induction planes U and V with wires at ±60° from
  the vertical (bipolar signals) and the collection plane Y with vertical wires (unipolar);
  3 mm pitch; 0.5 µs ticks (2 MHz sampling);
* drift along x at 1.098 mm/µs (273 V/cm), attenuation with a 10 ms electron lifetime,
  longitudinal and transverse diffusion (6.2 and 16.3 cm²/s), recombination with the modified
  Box model (ArgoNeuT: α = 0.93, β = 0.212 (kV/cm)(g/cm²)/MeV), W_ion = 23.6 eV;
* field response per plane on the wire the charge passes and its neighbours (±2 wires),
  electronics shaping CR-RC⁴ with 2 µs peaking time and 14 mV/fC gain, 12-bit ADC with
  0.488 mV per count, baselines 2048 (induction) and 400 (collection);
* noise: white (2.5 / 2.0 ADC RMS on induction / collection), coherent per group of 32 wires
  sharing a low-frequency waveform (2.0 ADC RMS), and a slow per-wire baseline wander (1.0 ADC RMS).

The field response is parametrized (Gaussian current on the collection wire; the derivative of
a Gaussian, integrating to zero, on induction wires; smaller induced currents on neighbours), not
computed with Garfield as the experiments do; the same response is what
:mod:`hepflow.reco.lartpc` deconvolves, as real signal processing deconvolves the simulated one.

:func:`detector_response` is the single source of the response; :func:`simulate_event` makes
one event of a topology (:data:`TOPOLOGIES`); :func:`generate_lartpc` writes chunk files.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import time
from typing import Any

import h5py
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import erf

from hepflow.errors import ConfigError
from hepflow.io import atomic_path, write_json_atomic
from hepflow.physics.chunks import generate_chunks, write_sidecar
from hepflow.physics.lartpc_transport import NONE, SEMANTIC_CLASSES, Deposits, isotropic, transport

__all__ = ["LArTPCSettings", "PLANES", "TOPOLOGIES", "detector_response", "drift_to_wires", "digitize",
           "simulate_event", "generate_lartpc", "wire_coordinate"]

PLANES = ("U", "V", "Y")
#: Event classes (label in the files) and the particles each starts with.
TOPOLOGIES = {"numu_cc": 0, "nue_cc": 1, "nc_pi0": 2, "muon": 3}
ELECTRON_FC = 1.602e-4  # fC per electron


@dataclasses.dataclass(frozen=True)
class LArTPCSettings:
    """Geometry, physics and readout settings (MicroBooNE values unless noted).

    Attributes:
        n_wires: Wires per plane (MicroBooNE: 2400 / 2400 / 3456; a sub-volume here: 256 wires
            span 77 cm along the beam, 5.5 radiation lengths, so showers develop).
        n_ticks: Samples per wire (MicroBooNE reads 9600; 0.5 µs each).
        pitch_cm: Wire pitch, 0.3 cm.
        tick_us: Sampling period, 0.5 µs.
        drift_cm: Drift length of the sub-volume (MicroBooNE: 256 cm; 50 cm here).
        trigger_tick: Tick at which charge from x = 0 arrives.
        drift_velocity_cm_us: 0.1098 cm/µs at 273 V/cm.
        lifetime_us: Electron lifetime, 10 ms (MicroBooNE measured > 18 ms in 2016 running).
        diffusion_long_cm2_s, diffusion_trans_cm2_s: 6.2 and 16.3 cm²/s (the LArSoft defaults).
        box_alpha, box_beta: Modified Box recombination (ArgoNeuT, JINST 8 P08005).
        field_kv_cm: Drift field, 0.273 kV/cm.
        gain_mv_fc: Preamplifier gain, 14 mV/fC; peaking_us: shaping, 2 µs.
        mv_per_adc: 2 V over 12 bits: 0.488 mV per ADC count.
        baseline_induction, baseline_collection: ADC baselines, 2048 and 400.
        white_noise_adc: (induction, collection) white noise RMS.
        coherent_noise_adc, coherent_group: Noise shared by groups of 32 wires (MicroBooNE's
            coherent noise follows its 48-channel motherboards; 32 here, for the sub-volume).
        wander_noise_adc: Slow per-wire baseline wander RMS.
    """

    n_wires: int = 256
    n_ticks: int = 1024
    pitch_cm: float = 0.3
    tick_us: float = 0.5
    drift_cm: float = 50.0
    trigger_tick: int = 40
    drift_velocity_cm_us: float = 0.1098
    lifetime_us: float = 10_000.0
    diffusion_long_cm2_s: float = 6.2
    diffusion_trans_cm2_s: float = 16.3
    box_alpha: float = 0.93
    box_beta: float = 0.212
    field_kv_cm: float = 0.273
    gain_mv_fc: float = 14.0
    peaking_us: float = 2.0
    mv_per_adc: float = 0.488
    baseline_induction: float = 2048.0
    baseline_collection: float = 400.0
    white_noise_adc: tuple[float, float] = (2.5, 2.0)
    coherent_noise_adc: float = 2.0
    coherent_group: int = 32
    wander_noise_adc: float = 1.0

    def __post_init__(self) -> None:
        last = self.trigger_tick + self.drift_cm / self.drift_velocity_cm_us / self.tick_us + 40
        if self.n_wires < 8 or self.n_ticks < last or self.coherent_group < 1:
            raise ConfigError(f"LArTPCSettings need n_wires ≥ 8 and n_ticks ≥ {last:.0f} (trigger + full drift + "
                              f"response). Received: n_wires={self.n_wires}, n_ticks={self.n_ticks}")

    @property
    def bounds(self) -> np.ndarray:
        """Active volume ``(3, 2)`` in cm: x (drift) ∈ [0, drift_cm], y and z so that the
        collection plane spans z and the induction planes span z/2 ± y·√3/2 with the same wires."""
        z = self.n_wires * self.pitch_cm
        y = 0.5 * z / np.sqrt(3.0)
        return np.array([[0.0, self.drift_cm], [-y, y], [0.0, z]])


def wire_coordinate(plane: int, y: np.ndarray, z: np.ndarray, settings: LArTPCSettings) -> np.ndarray:
    """Position across the wires of a plane, in wire units (0 … n_wires)."""
    if plane == 2:
        w = z
    else:
        sign = 1.0 if plane == 0 else -1.0
        w = 0.5 * z + sign * (np.sqrt(3.0) / 2) * y + settings.bounds[1, 1] * np.sqrt(3.0) / 2
    return w / settings.pitch_cm


# -- response -----------------------------------------------------------------------------------

RESPONSE_WIRES = 2  # neighbours on each side that see a current
RESPONSE_LEAD = 12  # ticks of the response before the charge's arrival tick
RESPONSE_TICKS = 48


def _field_response(plane: int, t_us: np.ndarray) -> np.ndarray:
    """Induced current per arriving electron, ``(2·RESPONSE_WIRES + 1, len(t))`` in electrons/µs.

    Collection: a Gaussian current (σ = 0.8 µs) on the wire, integral 1 electron; neighbours see
    a bipolar current 10 % as large, integral 0. Induction: the derivative of a Gaussian
    (σ = 1.0 µs), positive while the charge approaches, integral 0, its positive lobe carrying
    half an electron (induction signals are about half as large as collection signals);
    neighbours see 30 % (±1) and 6 % (±2) of the central wire's current.
    """
    out = np.zeros((2 * RESPONSE_WIRES + 1, len(t_us)))
    if plane == 2:
        sigma = 0.8
        gauss = np.exp(-0.5 * (t_us / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        bipolar = -t_us / sigma**2 * np.exp(-0.5 * (t_us / sigma) ** 2) / np.sqrt(2 * np.pi)
        out[RESPONSE_WIRES] = gauss
        out[RESPONSE_WIRES - 1] = out[RESPONSE_WIRES + 1] = 0.1 * bipolar
        return out
    sigma = 1.0
    bipolar = -t_us / sigma**2 * np.exp(-0.5 * (t_us / sigma) ** 2)  # lobe integral: σ·... normalised below
    bipolar /= np.sum(np.clip(bipolar, 0, None)) * (t_us[1] - t_us[0])
    for dw, share in ((0, 0.5), (1, 0.15), (2, 0.03)):
        out[RESPONSE_WIRES + dw] = out[RESPONSE_WIRES - dw] = share * bipolar
    return out


def _electronics_response(t_us: np.ndarray, settings: LArTPCSettings) -> np.ndarray:
    """CR-RC⁴ shaper output per fC (mV), peaking at ``peaking_us`` with ``gain_mv_fc``."""
    tau = settings.peaking_us / 4
    x = np.clip(t_us, 0, None) / tau
    h = x**4 * np.exp(-x)
    return settings.gain_mv_fc * h / h.max()


def detector_response(settings: LArTPCSettings = LArTPCSettings()) -> np.ndarray:
    """ADC counts per electron: ``(3 planes, 2·RESPONSE_WIRES + 1 wires, RESPONSE_TICKS)``.

    Entry ``[p, RESPONSE_WIRES + dw, k]`` is the signal on the wire ``dw`` away from where an
    electron arrives, ``k − RESPONSE_LEAD`` ticks after its arrival tick (field ⊗ electronics,
    integrated over each tick).
    """
    fine = 0.01
    t = np.arange(-RESPONSE_LEAD * settings.tick_us, (RESPONSE_TICKS - RESPONSE_LEAD) * settings.tick_us, fine)
    te = np.arange(0, 12 * settings.peaking_us, fine)
    elec = _electronics_response(te, settings) * ELECTRON_FC / settings.mv_per_adc  # ADC per electron (delta)
    out = np.zeros((3, 2 * RESPONSE_WIRES + 1, RESPONSE_TICKS))
    per_tick = int(round(settings.tick_us / fine))
    for plane in range(3):
        field = _field_response(plane, t)
        for row in range(field.shape[0]):
            signal = np.convolve(field[row], elec)[:len(t)] * fine  # current ⊗ shaper response
            out[plane, row] = signal[::per_tick][:RESPONSE_TICKS]
    return out


# -- drift, readout -----------------------------------------------------------------------------

def _recombination(dedx: np.ndarray, settings: LArTPCSettings) -> np.ndarray:
    beta = settings.box_beta / (1.396 * settings.field_kv_cm)
    xi = beta * np.maximum(dedx, 1e-3)
    return np.log(settings.box_alpha + xi) / xi


def drift_to_wires(deposits: dict[str, np.ndarray], settings: LArTPCSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Electrons arriving at each wire and tick, and the semantic label of each pixel.

    Ionization (W = 23.6 eV) after recombination drifts to the planes, attenuated by the electron
    lifetime and spread by diffusion: Gaussian in time (longitudinal) and across wires
    (transverse), integrated over each tick and wire.

    Returns:
        ``(charge (3, n_wires, n_ticks) float32 electrons, label (3, n_wires, n_ticks) int8)``:
        the label of a pixel is the class that put most charge there (``none`` where no charge).
    """
    xyz, energy, dedx, cls = deposits["xyz"], deposits["energy"], deposits["dedx"], deposits["label"]
    shape = (settings.n_wires, settings.n_ticks)
    charge = np.zeros((3, *shape), np.float64)
    per_class = np.zeros((len(SEMANTIC_CLASSES), 3, *shape), np.float32)
    if len(energy) == 0:
        return charge.astype(np.float32), np.zeros((3, *shape), np.int8)
    t_drift = xyz[:, 0] / settings.drift_velocity_cm_us
    electrons = energy * 1e6 / 23.6 * _recombination(dedx, settings) * np.exp(-t_drift / settings.lifetime_us)
    tick = settings.trigger_tick + t_drift / settings.tick_us
    sigma_t = np.sqrt(2 * settings.diffusion_long_cm2_s * t_drift * 1e-6) / settings.drift_velocity_cm_us \
        / settings.tick_us + 0.05
    sigma_w = np.sqrt(2 * settings.diffusion_trans_cm2_s * t_drift * 1e-6) / settings.pitch_cm + 0.05
    kt = np.arange(-4, 5)
    kw = np.arange(-2, 3)
    for plane in range(3):
        wire = wire_coordinate(plane, xyz[:, 1], xyz[:, 2], settings)
        w0, t0 = np.floor(wire).astype(int), np.floor(tick).astype(int)
        wires = w0[:, None] + kw[None, :]
        ticks = t0[:, None] + kt[None, :]
        fw = _bin_fractions(wire, sigma_w, wires)
        ft = _bin_fractions(tick, sigma_t, ticks)
        q = electrons[:, None, None] * fw[:, :, None] * ft[:, None, :]
        ww = np.broadcast_to(wires[:, :, None], q.shape)
        tt = np.broadcast_to(ticks[:, None, :], q.shape)
        ok = (ww >= 0) & (ww < shape[0]) & (tt >= 0) & (tt < shape[1])
        flat = (ww[ok] * shape[1] + tt[ok])
        charge[plane].flat[:] += np.bincount(flat, q[ok], minlength=shape[0] * shape[1])
        labels = np.broadcast_to(cls[:, None, None], q.shape)[ok]
        for c in np.unique(labels):
            sel = labels == c
            per_class[c, plane].flat[:] += np.bincount(flat[sel], q[ok][sel], minlength=shape[0] * shape[1])
    label = np.argmax(per_class, axis=0).astype(np.int8)
    label[charge <= 0] = NONE
    return charge.astype(np.float32), label


def _bin_fractions(center: np.ndarray, sigma: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """The fraction of a Gaussian (center, sigma) in each unit bin [k, k + 1)."""
    z = (bins - center[:, None]) / (np.sqrt(2) * sigma[:, None])
    return 0.5 * (erf(z + 1 / (np.sqrt(2) * sigma[:, None])) - erf(z))


def digitize(charge: np.ndarray, settings: LArTPCSettings, rng: np.random.Generator,
             response: np.ndarray | None = None) -> np.ndarray:
    """Raw ADC waveforms ``(3, n_wires, n_ticks)`` uint16: the charge convolved with the detector
    response (over wires and time), plus noise and baseline, rounded and clipped to 12 bits."""
    response = detector_response(settings) if response is None else response
    n_w, n_t = charge.shape[1:]
    out = np.zeros(charge.shape, np.float64)
    size = n_t + RESPONSE_TICKS
    for plane in range(3):
        spectrum = np.fft.rfft(charge[plane], n=size, axis=-1)
        for row in range(response.shape[1]):
            dw = row - RESPONSE_WIRES
            kernel = np.fft.rfft(response[plane, row], n=size)
            signal = np.fft.irfft(spectrum * kernel, n=size, axis=-1)[:, RESPONSE_LEAD:RESPONSE_LEAD + n_t]
            if dw > 0:
                out[plane, dw:] += signal[:-dw]
            elif dw < 0:
                out[plane, :dw] += signal[-dw:]
            else:
                out[plane] += signal
    out += _noise(charge.shape, settings, rng)
    base = np.array([settings.baseline_induction, settings.baseline_induction, settings.baseline_collection])
    return np.clip(np.rint(out + base[:, None, None]), 0, 4095).astype(np.uint16)


def _noise(shape, settings: LArTPCSettings, rng: np.random.Generator) -> np.ndarray:
    planes, n_w, n_t = shape
    induction, collection = settings.white_noise_adc
    white = rng.normal(size=shape) * np.array([induction, induction, collection])[:, None, None]
    groups = int(np.ceil(n_w / settings.coherent_group))
    coherent = gaussian_filter1d(rng.normal(size=(planes, groups, n_t)), 6.0, axis=-1)
    coherent *= settings.coherent_noise_adc / max(coherent.std(), 1e-9)
    coherent = np.repeat(coherent, settings.coherent_group, axis=1)[:, :n_w]
    wander = gaussian_filter1d(rng.normal(size=shape), 60.0, axis=-1)
    wander *= settings.wander_noise_adc / max(wander.std(), 1e-9)
    return white + coherent + wander


# -- events -------------------------------------------------------------------------------------

def _forward(rng) -> np.ndarray:
    """A direction within ~70° of the beam (z)."""
    cos = rng.uniform(0.35, 1.0)
    phi = rng.uniform(0, 2 * np.pi)
    sin = np.sqrt(1 - cos**2)
    return np.array([sin * np.cos(phi), sin * np.sin(phi), cos])


def _pi0_photons(rng) -> list[tuple[float, np.ndarray]]:
    """Two photons of a π0 with momentum 50-400 MeV/c along a forward direction."""
    m = 134.977
    p = rng.uniform(50, 400)
    e = np.hypot(p, m)
    d = _forward(rng)
    beta, gamma = p / e, e / m
    k = isotropic(rng)
    photons = []
    for sign in (1, -1):
        rest = sign * k * m / 2  # momentum in the π0 rest frame
        par = rest @ d
        lab_par = gamma * (par + beta * m / 2)
        lab = rest + (lab_par - par) * d
        photons.append((float(np.linalg.norm(lab)), lab / np.linalg.norm(lab)))
    return photons


def event_particles(topology: str, rng: np.random.Generator) -> list[tuple[str, float, np.ndarray]]:
    """The primary particles ``(kind, kinetic energy MeV, direction)`` of one event of ``topology``.

    ``numu_cc``: a μ⁻ (100-600 MeV) and 0-2 protons (30-150 MeV); ``nue_cc``: an electron
    (100-600 MeV) and 0-2 protons; ``nc_pi0``: the two photons of a π0 and 0-1 proton;
    ``muon``: one μ⁻ (200-600 MeV), for the hit-finding measurements.
    """
    protons = [("proton", rng.uniform(30, 150), isotropic(rng))
               for _ in range(rng.integers(0, 2 if topology == "nc_pi0" else 3))]
    if topology == "numu_cc":
        return [("muon", rng.uniform(100, 600), _forward(rng))] + protons
    if topology == "nue_cc":
        return [("electron", rng.uniform(100, 600), _forward(rng))] + protons
    if topology == "nc_pi0":
        return [("photon", e, d) for e, d in _pi0_photons(rng)] + protons
    if topology == "muon":
        return [("muon", rng.uniform(200, 600), _forward(rng))]
    raise ConfigError(f"topology must be one of {list(TOPOLOGIES)}. Received: {topology!r}")


def simulate_event(topology: str, settings: LArTPCSettings, rng: np.random.Generator,
                   response: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One event: ``adc`` (3, W, T) uint16, ``charge`` (3, W, T) float32 electrons, ``semantic``
    (3, W, T) int8, ``vertex`` (3,) cm, ``energy`` deposited (MeV)."""
    b = settings.bounds
    margin = np.minimum(3.0, 0.25 * (b[:, 1] - b[:, 0]))
    vertex = rng.uniform(b[:, 0] + margin, b[:, 1] - margin)
    if topology == "muon":  # enter near the upstream face so the track crosses the volume
        vertex[2] = rng.uniform(b[2, 0] + 1, b[2, 0] + 5)
    deposits = Deposits()
    for kind, energy, direction in event_particles(topology, rng):
        transport(kind, energy, vertex, direction, b, rng, deposits)
    arrays = deposits.arrays()
    charge, semantic = drift_to_wires(arrays, settings)
    adc = digitize(charge, settings, rng, response)
    return {"adc": adc, "charge": charge, "semantic": semantic, "vertex": vertex.astype(np.float32),
            "energy": np.float32(arrays["energy"].sum())}


# -- files --------------------------------------------------------------------------------------

def _chunk_seed(seed: int, topology: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, 7, TOPOLOGIES[topology], index]).generate_state(1)[0])


def _run_chunk(job: tuple) -> dict[str, Any]:
    out_dir, topology, index, n, seed, settings = job
    path = os.path.join(out_dir, f"{topology}_{index:05d}.h5")
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    response = detector_response(settings)
    events = [simulate_event(topology, settings, rng, response) for _ in range(n)]
    record = {"file": os.path.basename(path), "topology": topology, "seed": seed, "n_events": n,
              "settings": dataclasses.asdict(settings)}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("adc", data=np.stack([e["adc"] for e in events]))  # contiguous: the fast read path
        for key in ("charge", "semantic"):
            f.create_dataset(key, data=np.stack([e[key] for e in events]), chunks=(1, *events[0][key].shape),
                             compression="gzip", compression_opts=1, shuffle=True)
        f.create_dataset("vertex", data=np.stack([e["vertex"] for e in events]))
        f.create_dataset("energy", data=np.array([e["energy"] for e in events], np.float32))
        f.create_dataset("label", data=np.full(n, TOPOLOGIES[topology], np.int8))
        f.attrs["record"] = json.dumps(record)
    write_sidecar(path, record)
    return {**record, "seconds": time.perf_counter() - t}


def generate_lartpc(out_dir: str, *, counts: dict[str, int], chunk_events: int = 50, workers: int = 2,
                    seed: int = 1, settings: LArTPCSettings = LArTPCSettings(), progress: bool = True) -> dict[str, Any]:
    """Simulates ``counts[topology]`` events per topology as chunk files ``<topology>_NNNNN.h5``.

    Chunked, parallel, seeded per chunk and resumable like the other generators
    (:func:`hepflow.physics.chunks.generate_chunks`). Each file holds ``adc`` (n, 3, W, T)
    uint16 raw waveforms (U, V, Y), ``charge`` (n, 3, W, T) float32 electrons arriving per wire
    and tick (truth), ``semantic`` (n, 3, W, T) int8 pixel classes (``SEMANTIC_CLASSES``),
    ``vertex`` (n, 3) cm, ``energy`` (n,) MeV deposited and ``label`` (n,) int8 topology.

    Returns:
        The manifest (also ``out_dir/manifest.json``).
    """
    unknown = sorted(set(counts) - set(TOPOLOGIES))
    if unknown or not counts or min(counts.values()) <= 0 or chunk_events <= 0 or workers <= 0:
        raise ConfigError(f"counts must map topologies of {list(TOPOLOGIES)} to positive numbers, and chunk_events "
                          f"and workers must be > 0. Received: counts={dict(counts)!r}, chunk_events={chunk_events}, "
                          f"workers={workers}")
    chunks, results, elapsed = generate_chunks(
        out_dir, counts=counts, chunk_size=chunk_events,
        job_for=lambda p, index, n: (out_dir, p, index, n, _chunk_seed(seed, p, index), settings),
        want_for=lambda job: {"seed": job[4], "settings": dataclasses.asdict(settings)},
        run=_run_chunk, size_key="n_events", unit="event", workers=workers, progress=progress)
    made = sum(r["n_events"] for r in results)
    manifest = {"dataset": "lartpc_events", "seed": seed, "chunk_events": chunk_events,
                "settings": dataclasses.asdict(settings), "planes": list(PLANES), "topologies": TOPOLOGIES,
                "semantic_classes": list(SEMANTIC_CLASSES),
                "versions": {pkg: importlib.metadata.version(pkg) for pkg in ("numpy", "scipy", "h5py")},
                "counts": {p: sum(c["n_events"] for c in chunks if c["topology"] == p) for p in counts},
                "chunks": chunks,
                "generated_this_run": {"events": made, "seconds": elapsed, "events_per_s": made / elapsed if made else None}}
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return manifest
