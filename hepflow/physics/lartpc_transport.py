"""Particles in liquid argon → energy deposits, each labelled with what made it.

A fast parametrized transport, not Geant4; each simplification is stated where it is made.

* Muons, charged pions and protons: continuous slowing down with the Bethe formula (mean
  excitation energy 188 eV, no density effect) in 1 mm steps, multiple Coulomb scattering
  with the Highland formula, δ-rays above 3 MeV sampled from the 1/T² spectrum along the track.
  Pions do not interact hadronically (a stated simplification). A stopping μ⁻ decays to a
  Michel electron with probability 0.75 (the rest are captured by argon nuclei); its energy
  follows the Michel spectrum x²(3 − 2x) up to 52.8 MeV, its direction is isotropic.
* Electrons and photons: an electromagnetic cascade with radiation length X0 = 14 cm.
  Electrons lose 2.1 MeV/cm to ionization and radiate bremsstrahlung photons (fraction y of
  their energy, dN/dy ∝ 1/y above 1 MeV, mean free path X0 / ⟨y⟩); photons above 10 MeV pair
  convert after a distance drawn with mean 9/7 X0, below that they Compton scatter (mean free
  path 20 cm, the electron takes a uniform fraction of the energy) and are absorbed below 0.3 MeV.
  Particles below 1 MeV deposit their energy where they are.

Labels follow the PILArNet / lartpc_mlreco3d classes: ``TRACK`` (μ, π, p), ``SHOWER``
(electromagnetic cascades), ``MICHEL`` (the decay electron and its cascade), ``DELTA``
(δ-rays), ``LOW_ENERGY`` (deposits from particles that start below 2 MeV: Compton electrons,
blips).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["NONE", "TRACK", "SHOWER", "MICHEL", "DELTA", "LOW_ENERGY", "SEMANTIC_CLASSES", "MASS_MEV",
           "Deposits", "transport"]

NONE, TRACK, SHOWER, MICHEL, DELTA, LOW_ENERGY = range(6)
SEMANTIC_CLASSES = ("none", "track", "shower", "michel", "delta", "low_energy")
MASS_MEV = {"muon": 105.658, "pion": 139.570, "proton": 938.272, "electron": 0.511, "photon": 0.0}

RHO = 1.396  # g/cm³, liquid argon at 87 K
X0_CM = 14.0  # radiation length
Z_OVER_A = 18 / 39.948
I_MEV = 188e-6  # mean excitation energy
K_MEV = 0.307075  # 4π N_A r_e² m_e c², MeV cm²/mol
ELECTRON_DEDX = 2.1  # MeV/cm, collision loss of relativistic electrons
STEP_CM = 0.1
DELTA_CUT_MEV = 3.0
CUTOFF_MEV = 1.0
LOW_ENERGY_MEV = 2.0


@dataclasses.dataclass
class Deposits:
    """Energy deposits: positions ``(n, 3)`` in cm (x drift, y up, z beam), energies and dE/dx in
    MeV and MeV/cm, semantic labels."""

    xyz: list = dataclasses.field(default_factory=list)
    energy: list = dataclasses.field(default_factory=list)
    dedx: list = dataclasses.field(default_factory=list)
    label: list = dataclasses.field(default_factory=list)

    def add(self, xyz: np.ndarray, energy: np.ndarray, dedx: np.ndarray, label: int) -> None:
        if len(energy):
            self.xyz.append(np.asarray(xyz, np.float64).reshape(-1, 3))
            self.energy.append(np.asarray(energy, np.float64))
            self.dedx.append(np.asarray(dedx, np.float64))
            self.label.append(np.full(len(energy), label, np.int8))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.energy:
            return {"xyz": np.zeros((0, 3)), "energy": np.zeros(0), "dedx": np.zeros(0), "label": np.zeros(0, np.int8)}
        return {"xyz": np.concatenate(self.xyz), "energy": np.concatenate(self.energy),
                "dedx": np.concatenate(self.dedx), "label": np.concatenate(self.label)}


def bethe_dedx(kinetic_mev: np.ndarray, mass_mev: float) -> np.ndarray:
    """Mean collision stopping power (MeV/cm) of a singly charged heavy particle in liquid argon."""
    t = np.maximum(kinetic_mev, 1e-3)
    gamma = 1 + t / mass_mev
    beta2 = 1 - 1 / gamma**2
    me = 0.511
    tmax = 2 * me * beta2 * gamma**2 / (1 + 2 * gamma * me / mass_mev + (me / mass_mev) ** 2)
    arg = 2 * me * beta2 * gamma**2 * tmax / I_MEV**2
    return RHO * K_MEV * Z_OVER_A / beta2 * (0.5 * np.log(arg) - beta2)


class _RangeTable:
    """Kinetic energy ↔ residual range (CSDA) for one mass, by integrating the Bethe formula."""

    def __init__(self, mass_mev: float):
        self.t = np.geomspace(0.5, 20_000.0, 4000)
        dedx = bethe_dedx(self.t, mass_mev)
        seg = np.diff(self.t) * 0.5 * (1 / dedx[1:] + 1 / dedx[:-1])
        self.r = np.r_[self.t[0] / dedx[0], self.t[0] / dedx[0] + np.cumsum(seg)]

    def range_of(self, t: float) -> float:
        return float(np.interp(t, self.t, self.r))

    def energy_at(self, r: np.ndarray) -> np.ndarray:
        return np.interp(r, self.r, self.t, left=0.0)


_TABLES: dict[float, _RangeTable] = {}


def _table(mass: float) -> _RangeTable:
    if mass not in _TABLES:
        _TABLES[mass] = _RangeTable(mass)
    return _TABLES[mass]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def isotropic(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Unit vectors drawn uniformly on the sphere."""
    v = rng.normal(size=(n or 1, 3))
    v = _unit(v)
    return v if n else v[0]


def _perpendicular_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    u = _unit(np.cross(d, a))
    return u, np.cross(d, u)


def _path(start, direction, n_steps: int, theta0: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Step end points ``(n+1, 3)`` and directions of a scattered path (small-angle random walk of
    the direction, kicks of ``theta0`` per step in two perpendicular planes)."""
    u, w = _perpendicular_basis(direction)
    kicks = rng.normal(size=(n_steps, 2)) * theta0[:, None]
    angles = np.cumsum(kicks, axis=0)
    dirs = _unit(direction[None, :] + angles[:, :1] * u[None, :] + angles[:, 1:] * w[None, :])
    points = np.vstack([start, start + np.cumsum(dirs * STEP_CM, axis=0)])
    return points, dirs


def _inside(points: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.all((points >= bounds[:, 0]) & (points <= bounds[:, 1]), axis=-1)


def _first_exit(points: np.ndarray, bounds: np.ndarray) -> int:
    """Number of steps before the path first leaves the volume."""
    out = ~_inside(points, bounds)
    return int(np.argmax(out)) if out.any() else len(points)


def transport(kind: str, kinetic_mev: float, start: np.ndarray, direction: np.ndarray, bounds: np.ndarray,
              rng: np.random.Generator, deposits: Deposits, *, label: int | None = None) -> None:
    """Transports one particle (and what it makes) and appends its deposits.

    Args:
        kind: ``muon``, ``antimuon``, ``pion``, ``proton``, ``electron`` or ``photon``.
        kinetic_mev: Kinetic energy.
        start: Start point (cm); direction: unit vector.
        bounds: ``(3, 2)`` active volume (cm); particles stop depositing where they leave it.
        label: Semantic label for the deposits (default from the particle kind).
    """
    start, direction = np.asarray(start, float), _unit(np.asarray(direction, float))
    if kinetic_mev <= 0 or not _inside(start[None], bounds)[0]:
        return
    if kinetic_mev < CUTOFF_MEV:
        deposits.add(start, [kinetic_mev], [ELECTRON_DEDX], LOW_ENERGY if label is None else label)
        return
    if kind in ("muon", "antimuon", "pion", "proton"):
        _heavy(kind, kinetic_mev, start, direction, bounds, rng, deposits, label=TRACK if label is None else label)
    elif kind == "electron":
        lab = label if label is not None else (LOW_ENERGY if kinetic_mev < LOW_ENERGY_MEV else SHOWER)
        _electron(kinetic_mev, start, direction, bounds, rng, deposits, lab)
    elif kind == "photon":
        _photon(kinetic_mev, start, direction, bounds, rng, deposits, label)
    else:
        raise ValueError(f"Unknown particle kind {kind!r}")


def _heavy(kind, t0, start, direction, bounds, rng, deposits, *, label):
    mass = MASS_MEV["muon" if kind == "antimuon" else kind]
    table = _table(mass)
    r0 = table.range_of(t0)
    n = max(1, int(np.ceil(r0 / STEP_CM)))
    s = np.arange(n + 1) * STEP_CM
    t = table.energy_at(np.maximum(r0 - s, 0.0))
    t[-1] = 0.0
    p = np.sqrt(t[:-1] * (t[:-1] + 2 * mass))
    beta = p / (t[:-1] + mass)
    x = STEP_CM / X0_CM
    theta0 = np.where(p > 0, 13.6 / np.maximum(beta * p, 1e-3) * np.sqrt(x) * (1 + 0.038 * np.log(x)), 0.0)
    points, dirs = _path(start, direction, n, np.minimum(theta0, 0.5), rng)
    stop = _first_exit(points, bounds)  # points[k] is the end of step k − 1
    steps = max(0, min(n, stop - 1))
    de = (t[:-1] - t[1:])[:steps]
    mid = 0.5 * (points[:steps] + points[1:steps + 1])
    # δ-rays: dN/dT = 0.1535 ρ Z/A / β² / T² per cm, T from DELTA_CUT_MEV to T_max
    gamma = 1 + t[:steps] / mass
    beta2 = np.maximum(1 - 1 / gamma**2, 1e-6)
    tmax = 2 * 0.511 * beta2 * gamma**2 / (1 + 2 * gamma * 0.511 / mass + (0.511 / mass) ** 2)
    rate = np.where(tmax > DELTA_CUT_MEV, 0.1535 * RHO * Z_OVER_A / beta2 * (1 / DELTA_CUT_MEV - 1 / tmax), 0.0)
    made = np.flatnonzero(rng.random(steps) < rate * STEP_CM)
    for k in made:
        td = min(1 / (1 / DELTA_CUT_MEV - rng.random() * (1 / DELTA_CUT_MEV - 1 / tmax[k])), t[k])
        p_delta, p_max = np.sqrt(td * (td + 1.022)), np.sqrt(tmax[k] * (tmax[k] + 1.022))
        cos = min(1.0, td / p_delta * p_max / tmax[k])  # two-body kinematics of the knock-on electron
        u, w = _perpendicular_basis(dirs[k])
        phi = rng.uniform(0, 2 * np.pi)
        sin = np.sqrt(1 - cos**2)
        d = cos * dirs[k] + sin * (np.cos(phi) * u + np.sin(phi) * w)
        de[k] = max(de[k] - td, 0.0)
        transport("electron", td, mid[k], d, bounds, rng, deposits, label=DELTA)
    deposits.add(mid, de, de / STEP_CM, label)
    stopped_inside = steps == n
    if kind == "muon" and stopped_inside and rng.random() < 0.75:
        x = _michel_fraction(rng)
        transport("electron", x * 52.8, points[n], isotropic(rng), bounds, rng, deposits, label=MICHEL)


def _michel_fraction(rng) -> float:
    while True:  # accept-reject on x²(3 − 2x), maximum 1 at x = 1
        x = rng.random()
        if rng.random() < x * x * (3 - 2 * x):
            return x


def _electron(e0, start, direction, bounds, rng, deposits, label):
    """An electron's track: ionization at 2.1 MeV/cm, bremsstrahlung photons handed to :func:`_photon`."""
    energy, position, d = e0, np.asarray(start, float), direction
    while energy > CUTOFF_MEV:
        y_min = min(0.5, CUTOFF_MEV / energy)
        mean_y = (1 - y_min) / np.log(1 / y_min)  # dE/dx = E/X0 = (photons per X0) · ⟨y⟩ E
        free = rng.exponential(X0_CM * mean_y)
        ion_range = (energy - CUTOFF_MEV) / ELECTRON_DEDX
        length = min(free, ion_range)
        n = max(1, int(np.ceil(length / STEP_CM)))
        theta = 13.6 / max(energy, 0.5) * np.sqrt(STEP_CM / X0_CM) * np.ones(n)
        points, dirs = _path(position, d, n, np.minimum(theta, 0.6), rng)
        stop = _first_exit(points, bounds)
        steps = max(0, min(n, stop - 1))
        seg = length / n
        de = np.full(steps, seg * ELECTRON_DEDX)
        deposits.add(0.5 * (points[:steps] + points[1:steps + 1]), de, np.full(steps, ELECTRON_DEDX), label)
        if steps < n:
            return  # left the volume
        energy -= n * seg * ELECTRON_DEDX
        position, d = points[n], dirs[-1]
        if free < ion_range and energy > CUTOFF_MEV:
            y = y_min ** (1 - rng.random())  # dN/dy ∝ 1/y on [y_min, 1]
            k = y * energy
            energy -= k
            _photon(k, position, d, bounds, rng, deposits, None if label in (SHOWER, LOW_ENERGY) else label)
    if energy > 0:
        deposits.add(position, [energy], [ELECTRON_DEDX], label)


def _photon(e0, start, direction, bounds, rng, deposits, label):
    """A photon: pair conversion above 10 MeV, Compton scattering below, absorption below 0.3 MeV."""
    energy, position, d = e0, np.asarray(start, float), _unit(np.asarray(direction, float))
    while energy > 0.3:
        pair = energy > 10.0
        position = position + d * rng.exponential(9 / 7 * X0_CM if pair else 20.0)
        if not _inside(position[None], bounds)[0]:
            return
        if pair:
            f = rng.uniform(0.05, 0.95)
            for share in (f, 1 - f):
                e = share * energy - 0.511
                transport("electron", e, position, d, bounds, rng, deposits,
                          label=SHOWER if label is None else label)
            return
        f = rng.random()
        transport("electron", f * energy, position, d, bounds, rng, deposits,
                  label=LOW_ENERGY if label is None else label)
        energy *= 1 - f
        d = _unit(d + 0.8 * isotropic(rng))
    if energy > 0 and _inside(position[None], bounds)[0]:
        deposits.add(position, [energy], [ELECTRON_DEDX], LOW_ENERGY if label is None else label)
