"""A fast, parametrized shower simulation in the CaloGAN geometry.

Geant4 cannot run here, so hepflow simulates e+, γ and π+ showers from published shower
parametrizations and writes them in the CaloGAN HDF5 layout (``layer_0`` (N, 3, 96),
``layer_1`` (N, 12, 12), ``layer_2`` (N, 12, 6), ``energy`` (N, 1), ``overflow`` (N, 3)).

Geometry (hepflow's model of the CaloGAN calorimeter; Paganini, de Oliveira, Nachman,
arXiv:1705.02355, 1712.10321): a 480 × 480 mm face, three layers 90, 347 and 43 mm deep,
cells 5 × 160 mm (layer 0: 96 columns × 3 rows), 40 × 40 mm (layer 1) and 80 × 40 mm
(layer 2). The stack is modelled as a homogeneous mixture of 2 mm lead + 4 mm liquid argon:
X0 = 6 / (2/5.61 + 4/140) = 15.6 mm and λ_I = 6 / (2/175.9 + 4/857) = 374 mm (PDG values of
Pb and LAr), so the depth is 30.8 X0 but only 1.28 λ_I. Energies are those deposited per cell
(absorber included), as in the published files.

Electromagnetic showers (Grindhammer & Peters, hep-ex/0001020, and PDG "Passage of particles
through matter"):

* longitudinal: a Gamma profile in t = depth / X0 with mean depth T = ln(E/Ec) + C, C = -0.5
  (e) and +0.5 (γ), Ec = 8 MeV for the mixture; per shower, (ln T, ln α) are drawn from a
  correlated Gaussian whose widths shrink with ln(E/Ec) (the Grindhammer–Peters fluctuation
  model), so profiles fluctuate shower by shower; photons first convert after an exponential
  depth of 9/7 X0.
* lateral: a core and a tail component f(r) ∝ 2rR²/(r² + R²)², R_core = R_M (0.1 + 0.25 τ),
  R_tail = R_M (0.6 + 0.8 τ) with τ = t / T and R_M = 41 mm (21.2 MeV · X0 / Ec); the core
  fraction falls from 0.9 to 0.5 with depth.
* sampling: the energy is carried by spots of 10 MeV (a Poisson number), which gives the
  stochastic term 10 %/√E and shower-to-shower fluctuations in every cell.

π+ (charged pions):

* the first interaction happens after an exponential depth with mean λ_I; before it, and for
  the ~28 % that pass through without interacting, the pion deposits as a MIP (0.56 MeV/mm
  along its track);
* an electromagnetic fraction f_em with mean 1 - (E / 1 GeV)^(-0.18) (Groom's power law)
  and Beta-distributed fluctuations is deposited as photon showers (π0 → γγ) that start at the
  interaction point and spread at angles of ~0.15 rad;
* in a fraction ``LEADING_PI0_PROBABILITY`` (8 %) of the interactions a leading π0 (charge
  exchange and leading-particle production) takes most of the energy: f_em ~ Beta(18, 2) (mean
  0.9) and its photons are collinear with the pion. The f_em distribution of real hadron showers
  is asymmetric with a tail up to 1 for this reason (R. Wigmans, *Calorimetry*, 2nd ed., Oxford
  2017, ch. 2). Such a pion interacting in the first radiation lengths looks like an EM shower,
  which is what keeps e/π separation from being trivial. The 8 % is hepflow's choice, not a
  measured cross section;
* the hadronic rest: Gamma profile in λ_I units (mean depth 0.2 + 0.2 ln E [λ_I]), lateral
  exponential of width 0.25 λ_I, visible fraction 0.7 (e/h ≈ 1.4) carried by 25 MeV spots (the
  many soft particles of a hadron shower), so the response is lower and the showers deeper,
  wider and fluctuating more than EM ones.

Everything is vectorized numpy over the spots of a chunk of showers, seeded per chunk.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.errors import ConfigError

__all__ = ["Geometry", "GEOMETRY", "LEADING_PI0_PROBABILITY", "PARTICLES", "simulate", "LAYER_SHAPES"]

#: CaloGAN cell grids per layer: (rows, columns).
LAYER_SHAPES = tuple(CALOGAN_LAYERS.values())
PARTICLES = ("eplus", "gamma", "piplus")
#: Fraction of pion interactions in which a leading π0 takes most of the energy.
LEADING_PI0_PROBABILITY = 0.08


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The calorimeter: face size, layer depths (mm), grids, and the material constants."""

    face_mm: float = 480.0
    depths_mm: tuple[float, float, float] = (90.0, 347.0, 43.0)
    shapes: tuple[tuple[int, int], ...] = LAYER_SHAPES
    x0_mm: float = 6.0 / (2.0 / 5.61 + 4.0 / 140.0)
    lambda_mm: float = 6.0 / (2.0 / 175.9 + 4.0 / 857.0)
    critical_gev: float = 0.008
    mip_gev_per_mm: float = 0.00056

    @property
    def moliere_mm(self) -> float:
        return 0.0212 * self.x0_mm / self.critical_gev

    @property
    def boundaries_mm(self) -> np.ndarray:
        return np.cumsum((0.0,) + tuple(self.depths_mm))


GEOMETRY = Geometry()
_EM_SPOT_GEV = 0.010
_HAD_SPOT_GEV = 0.025
_HAD_VISIBLE = 0.7


def _em_spots(rng: np.random.Generator, energy: np.ndarray, start_mm: np.ndarray, offset_xy: np.ndarray,
              photon: np.ndarray, geo: Geometry):
    """Spots (shower index, depth mm, x mm, y mm, energy GeV) of EM showers."""
    n = len(energy)
    y = np.maximum(energy / geo.critical_gev, 2.0)
    lny = np.log(y)
    t_mean = np.maximum(lny + np.where(photon, 0.5, -0.5), 0.5)
    alpha_mean = 0.21 + (0.492 + 2.38 / 82.0) * lny
    # Grindhammer–Peters: correlated fluctuations of ln T and ln α, narrower at high energy
    s_t = 1.0 / np.maximum(-1.4 + 1.26 * lny, 1.0)
    s_a = 1.0 / np.maximum(-0.58 + 0.86 * lny, 1.0)
    rho = np.clip(0.705 - 0.023 * lny, 0.0, 0.95)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    ln_t = np.log(t_mean) + s_t * z1
    ln_a = np.log(np.maximum(alpha_mean, 1.1)) + s_a * (rho * z1 + np.sqrt(1 - rho**2) * z2)
    t_depth, alpha = np.exp(ln_t), np.maximum(np.exp(ln_a), 1.05)
    beta = (alpha - 1.0) / t_depth
    conversion = np.where(photon, rng.exponential(9.0 / 7.0, n), 0.0) * geo.x0_mm
    counts = rng.poisson(energy / _EM_SPOT_GEV)
    idx = np.repeat(np.arange(n), counts)
    t = rng.gamma(alpha[idx], 1.0 / beta[idx])  # in X0
    tau = t / t_depth[idx]
    core = rng.random(len(idx)) < np.clip(0.9 - 0.2 * tau, 0.5, 0.9)
    radius = geo.moliere_mm * np.where(core, 0.1 + 0.25 * tau, 0.6 + 0.8 * tau)
    u = rng.random(len(idx))
    r = radius * np.sqrt(u / (1.0 - u + 1e-12))
    phi = rng.uniform(0, 2 * math.pi, len(idx))
    depth = start_mm[idx] + conversion[idx] + t * geo.x0_mm
    x = offset_xy[idx, 0] + r * np.cos(phi)
    y_ = offset_xy[idx, 1] + r * np.sin(phi)
    return idx, depth, x, y_, np.full(len(idx), _EM_SPOT_GEV)


def _hadronic_spots(rng: np.random.Generator, energy: np.ndarray, start_mm: np.ndarray, geo: Geometry):
    n = len(energy)
    lne = np.log(np.maximum(energy, 1.0))
    mean_depth = (0.2 + 0.2 * lne) * geo.lambda_mm
    alpha = rng.lognormal(np.log(1.6 + 0.3 * lne), 0.3, n)
    beta = (alpha - 0.0) / mean_depth  # Gamma mean = α/β
    visible = energy * _HAD_VISIBLE * rng.lognormal(0.0, 0.25, n)
    counts = rng.poisson(visible / _HAD_SPOT_GEV)
    idx = np.repeat(np.arange(n), counts)
    depth = start_mm[idx] + rng.gamma(alpha[idx], 1.0 / beta[idx])
    r = rng.exponential(0.25 * geo.lambda_mm, len(idx)) * np.sqrt((depth - start_mm[idx]) / mean_depth[idx] + 0.2)
    phi = rng.uniform(0, 2 * math.pi, len(idx))
    return idx, depth, r * np.cos(phi), r * np.sin(phi), np.full(len(idx), _HAD_SPOT_GEV)


def _mip_spots(start_mm: np.ndarray, stop_mm: np.ndarray, geo: Geometry):
    """One spot per layer crossed between start and stop depth (the track at x = y = 0)."""
    idx, depth, e = [], [], []
    b = geo.boundaries_mm
    for layer in range(3):
        lo, hi = np.maximum(start_mm, b[layer]), np.minimum(stop_mm, b[layer + 1])
        length = np.clip(hi - lo, 0.0, None)
        rows = np.flatnonzero(length > 0)
        idx.append(rows)
        depth.append((lo[rows] + hi[rows]) / 2)
        e.append(length[rows] * geo.mip_gev_per_mm)
    idx_a = np.concatenate(idx)
    zeros = np.zeros(len(idx_a))
    return idx_a, np.concatenate(depth), zeros, zeros, np.concatenate(e)


def _deposit(n: int, spots, geo: Geometry) -> dict[str, np.ndarray]:
    idx, depth, x, y, e = (np.concatenate(parts) for parts in zip(*spots))
    out = {f"layer_{i}": np.zeros((n, *s), np.float32) for i, s in enumerate(geo.shapes)}
    overflow = np.zeros((n, 3), np.float64)
    layer = np.searchsorted(geo.boundaries_mm, depth, side="right") - 1
    half = geo.face_mm / 2
    for i, (rows, cols) in enumerate(geo.shapes):
        sel = layer == i
        col = np.floor((x[sel] + half) / geo.face_mm * cols).astype(np.int64)
        row = np.floor((y[sel] + half) / geo.face_mm * rows).astype(np.int64)
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        flat = (idx[sel][inside] * rows + row[inside]) * cols + col[inside]
        out[f"layer_{i}"] = np.bincount(flat, weights=e[sel][inside], minlength=n * rows * cols
                                        ).reshape(n, rows, cols).astype(np.float32)
        overflow[:, i] = np.bincount(idx[sel][~inside], weights=e[sel][~inside], minlength=n)
    out["overflow"] = overflow.astype(np.float32)
    return out


def simulate(particle: str, n: int, *, seed: int, energy_range: tuple[float, float] = (1.0, 100.0),
             energies: np.ndarray | None = None, geometry: Geometry = GEOMETRY) -> dict[str, np.ndarray]:
    """Simulates ``n`` showers of ``particle`` with energies uniform in ``energy_range`` (GeV).

    Args:
        particle: ``"eplus"``, ``"gamma"`` or ``"piplus"``.
        n: Number of showers.
        seed: Seed; the same seed gives the same showers.
        energy_range: Incident energies (GeV), uniform.
        energies: The incident energies (GeV) themselves, ``n`` of them, instead of drawing them
            (e.g. to simulate at a generator's energies).
        geometry: The calorimeter.

    Returns:
        The CaloGAN arrays: ``layer_0`` (n, 3, 96), ``layer_1`` (n, 12, 12), ``layer_2``
        (n, 12, 6), ``energy`` (n, 1) in GeV and ``overflow`` (n, 3), all float32.
    """
    if particle not in PARTICLES:
        raise ConfigError(f"particle must be one of {PARTICLES}. Received: particle={particle!r}")
    if n < 1 or not 0 < energy_range[0] < energy_range[1]:
        raise ConfigError(f"Need n ≥ 1 and 0 < Emin < Emax. Received: n={n}, energy_range={energy_range}")
    rng = np.random.default_rng(seed)
    energy = rng.uniform(*energy_range, n)
    if energies is not None:
        energy = np.asarray(energies, np.float64).reshape(-1)
        if len(energy) != n or not np.all(energy > 0):
            raise ConfigError(f"energies must hold n = {n} positive values. Received: {len(energy)} values, "
                                 f"min {energy.min() if len(energy) else None}")
    offset = rng.normal(0.0, 2.0, (n, 2))  # beam spot: a few mm around the centre of the face
    depth_total = geometry.boundaries_mm[-1]
    if particle != "piplus":
        spots = [_em_spots(rng, energy, np.zeros(n), offset, np.full(n, particle == "gamma"), geometry)]
    else:
        first = rng.exponential(geometry.lambda_mm, n)
        interacts = first < depth_total
        start = np.where(interacts, first, depth_total)
        spots = [_mip_spots(np.zeros(n), start, geometry)]
        rows = np.flatnonzero(interacts)
        e_int = energy[rows]
        f_mean = 1.0 - np.maximum(e_int, 1.0) ** -0.18
        k = 6.0  # Beta concentration: large event-by-event fluctuations of the EM fraction
        f_em = rng.beta(np.maximum(f_mean * k, 1e-3), np.maximum((1 - f_mean) * k, 1e-3))
        leading = rng.random(len(rows)) < LEADING_PI0_PROBABILITY
        f_em = np.where(leading, rng.beta(18.0, 2.0, len(rows)), f_em)
        em = _em_spots(rng, e_int * f_em, first[rows], offset[rows], np.ones(len(rows), bool), geometry)
        had = _hadronic_spots(rng, e_int * (1 - f_em), first[rows], geometry)
        i, d, x, y, e = em  # π0 photons leave the interaction point at angles of ~0.15 rad
        angle = np.where(leading[i], 0.0, np.abs(rng.normal(0.0, 0.15, len(i))))
        spread = (d - first[rows][i]) * angle
        turn = rng.uniform(0, 2 * math.pi, len(i))
        spots.append((rows[i], d, x + spread * np.cos(turn), y + spread * np.sin(turn), e))
        i, d, x, y, e = had
        spots.append((rows[i], d, x + offset[rows[i], 0], y + offset[rows[i], 1], e))
    out = _deposit(n, spots, geometry)
    out["energy"] = energy.astype(np.float32)[:, None]
    return out
