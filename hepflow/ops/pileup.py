"""Pileup mitigation as TensorFlow ops and pipeline transforms, on jets generated with pileup.

A pileup jet file (``hepflow generate jets --pileup-mu``) holds per jet its constituents with
``track_vertex`` (0: a track from the leading vertex, 1: a track from a pileup vertex, -1: a
tower, which cannot tell), its active ``area`` and a grid of event patches (``patch_pt_sum``,
``patch_pt_max``: scalar and highest pT of the towers in each patch, |η| < 2.5,
:mod:`hepflow.physics.pileup`). From those:

* **Charged-hadron subtraction (CHS)**: drop the tracks from pileup vertices.
* **Area–median subtraction** (Cacciari, Salam, Soyez, arXiv:0707.1378): after CHS, subtract
  ρ·A_μ from the jet four-momentum. ρ is the median of the towers' pT density over the patches
  of the three η rows nearest the jet (FastJet's grid-median estimator, local in η: the tower
  threshold acts on energy, so the density of the towers grows with |η|, by 20 % from η = 0 to
  2.2 at μ = 140). A_μ is the four-vector area: that of a uniformly covered disc with the jet's
  active area, as ghosts would give it, so the pileup's contribution to the mass goes too.
* **SoftKiller** (Cacciari, Salam, Soyez, arXiv:1407.0408): after CHS, drop the towers whose pT
  is below the median over the patches of the highest tower pT in each patch, the cut that
  leaves half the patches empty. The jet is the sum of what is left of its constituents (not
  reclustered: the constituents stay those the mixed event's clustering assigned).
* **PUMML** (Komiske, Metodiev, Nachman, Schwartz, arXiv:1707.08600): a CNN that predicts the
  leading-vertex neutral pT per pixel from the charged-LV, charged-PU and all-neutral images
  (:func:`pumml_images`, the model in :mod:`hepflow.models.pumml`); :func:`pumml_jet` sums its
  prediction and the leading-vertex tracks back into a jet.

Constituents are ``(batch, n, 4)`` (E, px, py, pz) in GeV, zero-padded; a removed
constituent becomes padding (zeros) in place, so the others keep their slots.
"""
from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from hepflow.ops.jets import jet_four_vector, jet_kinematics, pixelize
from hepflow.physics.pileup import PATCH_ETA_BINS, PATCH_ETA_MAX, PATCH_PHI_BINS

__all__ = ["METHODS", "PATCH_AREA", "charged_hadron_subtraction", "patch_rho", "softkiller_cut", "softkiller",
           "disc_area_four_vector", "area_median_subtraction", "mitigated_jet", "PileupMitigation", "pumml_images", "pumml_jet", "PummlImages"]

#: Area of one event patch (Δη × Δφ = 0.5 × 2π/12), as in :mod:`hepflow.physics.pileup`.
PATCH_AREA = (2 * PATCH_ETA_MAX / PATCH_ETA_BINS) * (2 * math.pi / PATCH_PHI_BINS)
#: Methods of :func:`mitigated_jet` and :class:`PileupMitigation`.
METHODS = ("none", "chs", "area_median", "softkiller")
_EPS = 1e-8


def _median(x: tf.Tensor) -> tf.Tensor:
    """Median over the last axis (mean of the two middle values for an even count)."""
    s = tf.sort(tf.cast(x, tf.float32), axis=-1)
    n = s.shape[-1]
    return 0.5 * (s[..., (n - 1) // 2] + s[..., n // 2])


def charged_hadron_subtraction(constituents: tf.Tensor, track_vertex: tf.Tensor) -> tf.Tensor:
    """Constituents with the tracks of pileup vertices (``track_vertex == 1``) removed."""
    keep = tf.not_equal(tf.cast(track_vertex, tf.int32), 1)
    return tf.cast(constituents, tf.float32) * tf.cast(keep, tf.float32)[..., None]


def patch_rho(patch_pt_sum: tf.Tensor, jet_eta: tf.Tensor | None = None, *, rows: int = 3,
              patch_area: float = PATCH_AREA) -> tf.Tensor:
    """``(batch,)`` ρ: the median over patches of the towers' pT per unit area (GeV).

    Args:
        patch_pt_sum: ``(batch, PATCH_ETA_BINS · PATCH_PHI_BINS)`` as the pileup files store it.
        jet_eta: Optional ``(batch,)``: then only the ``rows`` η rows of patches nearest the jet count.
        rows: How many η rows (default 3: |Δη| ≲ 0.75).
    """
    x = tf.cast(patch_pt_sum, tf.float32)
    if jet_eta is None:
        return _median(x) / patch_area
    grid = tf.reshape(x, (-1, PATCH_ETA_BINS, PATCH_PHI_BINS))
    centres = (tf.range(PATCH_ETA_BINS, dtype=tf.float32) + 0.5) * (2 * PATCH_ETA_MAX / PATCH_ETA_BINS) - PATCH_ETA_MAX
    first = tf.argmin(tf.abs(centres[None, :] - tf.cast(jet_eta, tf.float32)[:, None]), axis=-1, output_type=tf.int32)
    first = tf.clip_by_value(first - rows // 2, 0, PATCH_ETA_BINS - rows)
    index = first[:, None] + tf.range(rows)[None, :]
    near = tf.gather(grid, index, batch_dims=1)
    return _median(tf.reshape(near, (-1, rows * PATCH_PHI_BINS))) / patch_area


def disc_area_four_vector(eta: tf.Tensor, phi: tf.Tensor, area: tf.Tensor, *, radial: int = 8,
                          angular: int = 16) -> tf.Tensor:
    """``(batch, 4)``: the four-vector area of a disc of ``area`` around (η, φ).

    The sum of massless ghosts of unit pT density covering the disc, by a quadrature of
    ``radial × angular`` equal-area cells: what FastJet's active-area ghosts sum to for a
    circular jet.
    """
    area = tf.cast(area, tf.float32)
    radius = tf.sqrt(area / math.pi)
    r = tf.sqrt((tf.range(radial, dtype=tf.float32) + 0.5) / radial)  # equal-area rings of the unit disc
    theta = (tf.range(angular, dtype=tf.float32) + 0.5) * (2 * math.pi / angular)
    dx = tf.reshape(r[:, None] * tf.cos(theta)[None, :], [-1])
    dy = tf.reshape(r[:, None] * tf.sin(theta)[None, :], [-1])
    g_eta = tf.cast(eta, tf.float32)[:, None] + radius[:, None] * dx[None, :]
    g_phi = tf.cast(phi, tf.float32)[:, None] + radius[:, None] * dy[None, :]
    pt = (area / (radial * angular))[:, None]
    return tf.stack([tf.reduce_sum(pt * tf.cosh(g_eta), -1), tf.reduce_sum(pt * tf.cos(g_phi), -1),
                     tf.reduce_sum(pt * tf.sin(g_phi), -1), tf.reduce_sum(pt * tf.sinh(g_eta), -1)], axis=-1)


def softkiller_cut(patch_pt_max: tf.Tensor) -> tf.Tensor:
    """``(batch,)`` the SoftKiller pT cut: the median over patches of the highest tower pT in each."""
    return _median(patch_pt_max)


def softkiller(constituents: tf.Tensor, charge: tf.Tensor, cut: tf.Tensor) -> tf.Tensor:
    """Constituents with the neutral ones (towers, ``charge == 0``) of pT below ``cut`` removed."""
    c = tf.cast(constituents, tf.float32)
    pt = tf.sqrt(c[..., 1] ** 2 + c[..., 2] ** 2)
    drop = tf.equal(tf.cast(charge, tf.int32), 0) & (pt < tf.cast(cut, tf.float32)[:, None])
    return c * tf.cast(~drop, tf.float32)[..., None]


def area_median_subtraction(jet: tf.Tensor, rho: tf.Tensor, area: tf.Tensor) -> tf.Tensor:
    """``(batch, 4)``: the jet four-momentum minus ρ·A_μ; nothing left when that removes all its pT.

    A_μ is :func:`disc_area_four_vector` around the jet's axis (the ρ_m term of massive pileup is
    left out: towers are massless).
    """
    jet = tf.cast(jet, tf.float32)
    k = jet_kinematics(jet[:, None, :])
    out = jet - tf.cast(rho, tf.float32)[:, None] * disc_area_four_vector(k["eta"], k["phi"], area)
    alive = (tf.reduce_sum(out[:, 1:3] * jet[:, 1:3], -1) > 0) & (out[:, 0] > 0)  # still pointing the jet's way
    return out * tf.cast(alive, tf.float32)[:, None]


def mitigated_jet(features: dict[str, tf.Tensor], method: str) -> tuple[tf.Tensor, tf.Tensor]:
    """``(constituents, jet four-momentum)`` after ``method``, one of :data:`METHODS`.

    ``"none"`` sums the stored constituents; ``"area_median"`` keeps the CHS constituents and
    corrects only the jet four-momentum.
    """
    if method not in METHODS:
        raise ValueError(f"pileup mitigation method must be one of {METHODS}. Received: method={method!r}")
    c = tf.cast(features["constituents"], tf.float32)
    if method != "none":
        c = charged_hadron_subtraction(c, features["track_vertex"])
    if method == "softkiller":
        c = softkiller(c, features["charge"], softkiller_cut(features["patch_pt_max"]))
    jet = jet_four_vector(c)
    if method == "area_median":
        eta = jet_kinematics(jet[:, None, :])["eta"]
        jet = area_median_subtraction(jet, patch_rho(features["patch_pt_sum"], eta), features["area"])
    return c, jet


_NEEDS = {"none": ("constituents",), "chs": ("constituents", "track_vertex"),
          "area_median": ("constituents", "track_vertex", "patch_pt_sum", "area"),
          "softkiller": ("constituents", "track_vertex", "charge", "patch_pt_max")}
_CONSUMED = ("track_vertex", "pileup_fraction", "patch_pt_sum", "patch_pt_max", "area", "n_pileup")


class PileupMitigation:
    """Pipeline transform: a pileup jet's constituents after ``method``, and its corrected ``pt`` and ``mass``.

    The pileup bookkeeping (``track_vertex``, ``patch_*``, ``area``, ``pileup_fraction``,
    ``n_pileup``) is consumed; ``constituents``, ``charge`` and ``type`` go on to the next
    transform (jet images, constituent features) with what is left, hardest first and padded
    after, as in the files; ``pt`` and ``mass`` are replaced by the mitigated jet's.

    Args:
        method: One of :data:`METHODS` (default ``"softkiller"``).
    """

    def __init__(self, *, method: str = "softkiller") -> None:
        if method not in METHODS:
            raise ValueError(f"PileupMitigation: method must be one of {METHODS}. Received: method={method!r}")
        self.method = method

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        missing = [k for k in _NEEDS[self.method] if k not in features]
        if missing:
            raise KeyError(f"PileupMitigation(method={self.method!r}) needs {list(_NEEDS[self.method])} "
                           f"(a file of `hepflow generate jets --pileup-mu`). Received: {sorted(features)}")
        constituents, jet = mitigated_jet(features, self.method)
        out = {k: v for k, v in features.items() if k not in _CONSUMED}
        k = jet_kinematics(jet[:, None, :])
        # what is left, hardest first and the padding after it, as in the files
        real = constituents[..., 0] > 0
        pt = tf.where(real, tf.sqrt(constituents[..., 1] ** 2 + constituents[..., 2] ** 2), -1.0)
        order = tf.argsort(pt, axis=-1, direction="DESCENDING", stable=True)
        out.update(constituents=tf.gather(constituents, order, batch_dims=1), pt=k["pt"], mass=k["mass"])
        for key in ("charge", "type"):  # removed constituents lose their charge and type too
            if key in out:
                out[key] = tf.gather(tf.where(real, tf.cast(out[key], tf.int32), 0), order, batch_dims=1)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"method": self.method}


def _axis(constituents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    k = jet_kinematics(constituents)
    return k["eta"], k["phi"]


def _pixels(constituents: tf.Tensor, eta0: tf.Tensor, phi0: tf.Tensor, weights: tf.Tensor, *, npix: int,
            half_width: float) -> tf.Tensor:
    """``(batch, npix, npix, channels)`` sums of ``weights`` ``(batch, n, channels)`` per pixel around (η0, φ0)."""
    c = tf.cast(constituents, tf.float32)
    pt = tf.sqrt(c[..., 1] ** 2 + c[..., 2] ** 2)
    eta = tf.asinh(c[..., 3] / tf.maximum(pt, _EPS))
    phi = tf.atan2(c[..., 2], c[..., 1])
    dphi = tf.math.floormod(phi - phi0[:, None] + math.pi, 2 * math.pi) - math.pi
    return pixelize(eta - eta0[:, None], dphi, weights, c[..., 0] > 0, npix=npix, half_width=half_width)


def pumml_images(constituents: tf.Tensor, charge: tf.Tensor, track_vertex: tf.Tensor, *,
                 nopu_constituents: tf.Tensor | None = None, nopu_charge: tf.Tensor | None = None,
                 npix: int = 32, half_width: float = 0.8, pt_unit: float = 10.0) -> dict[str, tf.Tensor]:
    """PUMML's images of a pileup jet, centred on its CHS axis (no rotation or flip).

    Pixel ``(i, j)``: Δφ row ``i``, Δη column ``j``, each ``2·half_width/npix`` wide; values are
    pT in units of ``pt_unit`` GeV.

    Returns:
        ``image`` ``(batch, npix, npix, 3)``: leading-vertex tracks, pileup tracks, all towers;
        ``axis`` ``(batch, 2)``: the (η, φ) of the centre; with the pileup-free jet given, also
        ``target_image`` ``(batch, npix, npix, 1)``: its towers in the same pixels.
    """
    c = tf.cast(constituents, tf.float32)
    eta0, phi0 = _axis(charged_hadron_subtraction(c, track_vertex))
    pt = tf.sqrt(c[..., 1] ** 2 + c[..., 2] ** 2) / pt_unit
    tv = tf.cast(track_vertex, tf.int32)
    neutral = tf.cast(tf.equal(tf.cast(charge, tf.int32), 0), tf.float32)
    weights = tf.stack([pt * tf.cast(tf.equal(tv, 0), tf.float32) * (1 - neutral),
                        pt * tf.cast(tf.equal(tv, 1), tf.float32) * (1 - neutral), pt * neutral], axis=-1)
    out = {"image": _pixels(c, eta0, phi0, weights, npix=npix, half_width=half_width),
           "axis": tf.stack([eta0, phi0], axis=-1)}
    if nopu_constituents is not None:
        t = tf.cast(nopu_constituents, tf.float32)
        t_pt = tf.sqrt(t[..., 1] ** 2 + t[..., 2] ** 2) / pt_unit
        t_neutral = tf.cast(tf.equal(tf.cast(nopu_charge, tf.int32), 0), tf.float32)
        out["target_image"] = _pixels(t, eta0, phi0, (t_pt * t_neutral)[..., None], npix=npix, half_width=half_width)
    return out


def pumml_jet(neutral_image: tf.Tensor, axis: tf.Tensor, constituents: tf.Tensor, charge: tf.Tensor,
              track_vertex: tf.Tensor, *, half_width: float = 0.8, pt_unit: float = 10.0) -> tf.Tensor:
    """``(batch, 4)``: leading-vertex tracks plus a neutral image (massless pixels at their centres)."""
    img = tf.cast(neutral_image, tf.float32)[..., 0] * pt_unit
    npix = img.shape[1]
    centres = (tf.range(npix, dtype=tf.float32) + 0.5) * (2 * half_width / npix) - half_width
    eta = axis[:, 0, None, None] + centres[None, None, :]  # columns follow Δη
    phi = axis[:, 1, None, None] + centres[None, :, None]  # rows follow Δφ
    neutral = tf.stack([tf.reduce_sum(img * tf.cosh(eta), [1, 2]), tf.reduce_sum(img * tf.cos(phi), [1, 2]),
                        tf.reduce_sum(img * tf.sin(phi), [1, 2]), tf.reduce_sum(img * tf.sinh(eta), [1, 2])], axis=-1)
    c = tf.cast(constituents, tf.float32)
    lv_track = tf.equal(tf.cast(track_vertex, tf.int32), 0) & tf.not_equal(tf.cast(charge, tf.int32), 0)
    return neutral + tf.reduce_sum(c * tf.cast(lv_track, tf.float32)[..., None], axis=1)


class PummlImages:
    """Pipeline transform: a pileup jet → ``image`` (3 channels) and, with ``nopu_*`` keys, ``target_image``.

    Consumes ``constituents``, ``charge``, ``track_vertex`` and the ``nopu_constituents`` and
    ``nopu_charge`` of the pileup-free jet; other features pass through. Keyword arguments are
    those of :func:`pumml_images` (defaults: 32 pixels over ±0.8, pT in units of 10 GeV).
    """

    def __init__(self, *, npix: int = 32, half_width: float = 0.8, pt_unit: float = 10.0) -> None:
        if npix < 1 or not half_width > 0 or not pt_unit > 0:
            raise ValueError("PummlImages needs npix ≥ 1, half_width > 0 and pt_unit > 0. "
                             f"Received: npix={npix}, half_width={half_width}, pt_unit={pt_unit}")
        self.kwargs = dict(npix=npix, half_width=half_width, pt_unit=pt_unit)

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        missing = [k for k in ("constituents", "charge", "track_vertex") if k not in features]
        if missing:
            raise KeyError("PummlImages needs 'constituents', 'charge' and 'track_vertex' (a file of "
                           f"`hepflow generate jets --pileup-mu`). Received: {sorted(features)}")
        if ("nopu_constituents" in features) != ("nopu_charge" in features):
            raise KeyError("PummlImages makes the target image from both 'nopu_constituents' and 'nopu_charge'. "
                           f"Received: {sorted(features)}")
        out = dict(features)
        images = pumml_images(out.pop("constituents"), out.pop("charge"), out.pop("track_vertex"),
                              nopu_constituents=out.pop("nopu_constituents", None),
                              nopu_charge=out.pop("nopu_charge", None), **self.kwargs)
        out.update(images)
        return out

    def get_config(self) -> dict[str, Any]:
        return dict(self.kwargs)
