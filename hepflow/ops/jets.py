"""Jet operations as TensorFlow ops: usable inside ``tf.data`` pipelines and exported models.

Inputs are zero-padded constituents ``(batch, n, 4)`` as (E, px, py, pz) in GeV; a
constituent with E = 0 is padding. Angles are in radians; Δφ is wrapped into (-π, π].
"""
from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

__all__ = ["padding_mask", "jet_four_vector", "jet_kinematics", "constituent_features", "preprocess_coordinates",
           "nsubjettiness_ratios", "pixelize", "jet_images", "JetImages", "ConstituentFeatures",
           "HighLevelFeatures"]

_EPS = 1e-8


def _wrap(dphi: tf.Tensor) -> tf.Tensor:
    return tf.math.floormod(dphi + math.pi, 2 * math.pi) - math.pi


def padding_mask(constituents: tf.Tensor) -> tf.Tensor:
    """``(batch, n)`` bool: True for real constituents (E > 0)."""
    return constituents[..., 0] > 0


def jet_four_vector(constituents: tf.Tensor) -> tf.Tensor:
    """``(batch, 4)``: the sum of the constituents' (E, px, py, pz)."""
    return tf.reduce_sum(tf.cast(constituents, tf.float32), axis=-2)


def jet_kinematics(constituents: tf.Tensor) -> dict[str, tf.Tensor]:
    """Jet ``pt``, ``eta``, ``phi`` and ``mass`` (GeV, radians), each ``(batch,)``."""
    p = jet_four_vector(constituents)
    e, px, py, pz = tf.unstack(p, axis=-1)
    pt = tf.sqrt(px**2 + py**2)
    return {"pt": pt, "eta": tf.asinh(pz / tf.maximum(pt, _EPS)), "phi": tf.atan2(py, px),
            "mass": tf.sqrt(tf.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))}


def constituent_features(constituents: tf.Tensor) -> dict[str, tf.Tensor]:
    """Per-constituent kinematics relative to the jet axis, each ``(batch, n)``.

    Returns ``pt``, ``eta``, ``phi``, ``delta_eta``, ``delta_phi`` (wrapped), ``delta_r``,
    ``log_pt``, ``log_e``, ``log_pt_rel`` (log pT / pT_jet), ``log_e_rel`` and ``mask``.
    Padding entries are 0.
    """
    c = tf.cast(constituents, tf.float32)
    e, px, py, pz = tf.unstack(c, axis=-1)
    mask = e > 0
    m = tf.cast(mask, tf.float32)
    pt = tf.sqrt(px**2 + py**2)
    eta = tf.asinh(pz / tf.maximum(pt, _EPS))
    phi = tf.atan2(py, px)
    jet = jet_kinematics(c)
    jet_e = tf.reduce_sum(e, axis=-1)
    deta = (eta - jet["eta"][:, None]) * m
    dphi = _wrap(phi - jet["phi"][:, None]) * m
    safe_pt, safe_e = tf.maximum(pt, _EPS), tf.maximum(e, _EPS)
    return {
        "pt": pt * m, "eta": eta * m, "phi": phi * m, "delta_eta": deta, "delta_phi": dphi,
        "delta_r": tf.sqrt(deta**2 + dphi**2),
        "log_pt": tf.math.log(safe_pt) * m, "log_e": tf.math.log(safe_e) * m,
        "log_pt_rel": tf.math.log(safe_pt / jet["pt"][:, None]) * m,
        "log_e_rel": tf.math.log(safe_e / jet_e[:, None]) * m,
        "mask": mask,
    }


def nsubjettiness_ratios(tau: tf.Tensor) -> dict[str, tf.Tensor]:
    """``tau21`` and ``tau32`` from ``(batch, 3)`` (τ1, τ2, τ3); 0 where the denominator is 0."""
    t1, t2, t3 = tf.unstack(tf.cast(tau, tf.float32), axis=-1)
    return {"tau21": tf.math.divide_no_nan(t2, t1), "tau32": tf.math.divide_no_nan(t3, t2)}


def preprocess_coordinates(deta: tf.Tensor, dphi: tf.Tensor, pt: tf.Tensor, mask: tf.Tensor, *,
                           center: bool = True, rotate: bool = True, flip: bool = True
                           ) -> tuple[tf.Tensor, tf.Tensor]:
    """DeepTop-style (Δη, Δφ) preprocessing of ``(batch, n)`` coordinates; see :func:`jet_images`."""
    m = tf.cast(mask, tf.float32)
    w = pt * m / tf.maximum(tf.reduce_sum(pt * m, axis=-1, keepdims=True), _EPS)
    x, y = deta * m, dphi * m
    if center:
        x = (x - tf.reduce_sum(w * x, axis=-1, keepdims=True)) * m
        y = (y - tf.reduce_sum(w * y, axis=-1, keepdims=True)) * m
    if rotate:
        sxx = tf.reduce_sum(w * x * x, axis=-1, keepdims=True)
        syy = tf.reduce_sum(w * y * y, axis=-1, keepdims=True)
        sxy = tf.reduce_sum(w * x * y, axis=-1, keepdims=True)
        theta = 0.5 * tf.atan2(2 * sxy, sxx - syy)  # angle of the principal axis from the Δη axis
        alpha = math.pi / 2 - theta  # rotate that axis onto Δφ
        ca, sa = tf.cos(alpha), tf.sin(alpha)
        x, y = ca * x - sa * y, sa * x + ca * y
    if flip:  # the heavier half in pT goes to +Δη, then to +Δφ (centred means are 0: compare halves)
        x = x * tf.where(tf.reduce_sum(w * tf.sign(x), axis=-1, keepdims=True) < 0, -1.0, 1.0)
        y = y * tf.where(tf.reduce_sum(w * tf.sign(y), axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return x, y


def jet_images(constituents: tf.Tensor, *, charge: tf.Tensor | None = None, ptype: tf.Tensor | None = None,
               npix: int = 37, half_width: float = 1.0, center: bool = True, rotate: bool = True,
               flip: bool = True, normalize: bool | str = True, pt_unit: float = 1.0,
               colours: str = "tracks") -> tf.Tensor:
    """Pixelated jet images ``(batch, npix, npix, channels)`` with DeepTop-style preprocessing.

    Args:
        constituents: ``(batch, n, 4)`` (E, px, py, pz), zero-padded.
        charge: Optional ``(batch, n)`` constituent charges. With ``ptype`` the image has
            the colours named by ``colours``; without, one colour (pT).
        ptype: Optional ``(batch, n)`` type codes (``hepflow.physics.detector``: 1 photon,
            2 neutral hadron, 3 charged hadron, 4 electron, 5 muon).
        npix: Pixels per side.
        half_width: The image covers Δη, Δφ ∈ [-half_width, half_width] (radians).
        center: Shift the pT-weighted centroid of (η, φ) to the image centre
            (otherwise the jet axis from the constituent sum).
        rotate: Rotate the principal axis of the pT-weighted (Δη, Δφ) distribution to
            the vertical (Δφ) direction.
        flip: Reflect so that the half with more pT lies at Δη > 0, and likewise for Δφ
            (the heaviest quadrant is fixed at Δη > 0, Δφ > 0).
        normalize: How pixel values are scaled. ``True`` or ``"channel"`` (DeepTop): every
            channel divided by its own total, so each sums to 1. ``"jet"``: the pT channels
            divided by the scalar pT sum of all constituents, the multiplicity channels left as
            counts, so the charged fraction and the multiplicities survive. ``False`` or
            ``"none"``: pT channels in units of ``pt_unit`` GeV and counts, so the image also
            carries the jet's absolute scale (its mass, not only mass / pT).
        pt_unit: GeV per unit of pT pixel value when ``normalize`` is off (e.g. 100 keeps the
            pixels of order 1 for TeV-scale jets).
        colours: With ``charge`` and ``ptype``: ``"tracks"``, the four colours of Macaluso &
            Shih (neutral pT, track pT, track multiplicity, muon multiplicity), or
            ``"particle_id"``, seven: the pT of photons, neutral hadrons, charged hadrons,
            electrons and muons, then the track and the neutral multiplicity.

    Pixel ``(i, j)`` (row, column) covers Δφ ∈ [-w + i·2w/npix, -w + (i+1)·2w/npix) and
    Δη likewise with ``j``: rows follow Δφ, columns follow Δη.
    """
    mode = _normalize_mode(normalize)
    if colours not in _COLOURS:
        raise ValueError(f"jet_images: colours must be one of {_COLOURS}. Received: colours={colours!r}")
    if not pt_unit > 0:
        raise ValueError(f"jet_images: pt_unit must be > 0 (GeV). Received: pt_unit={pt_unit}")
    f = constituent_features(constituents)
    m = tf.cast(f["mask"], tf.float32)
    pt = f["pt"]
    x, y = preprocess_coordinates(f["delta_eta"], f["delta_phi"], pt, m, center=center, rotate=rotate, flip=flip)
    if charge is None or ptype is None:
        channels = pt[..., None]
        is_pt = tf.constant([1.0])
    else:
        track = tf.cast(tf.not_equal(charge, 0), tf.float32) * m
        ptype = tf.cast(ptype, tf.int32)
        if colours == "tracks":
            muon = tf.cast(tf.equal(ptype, 5), tf.float32) * m
            channels = tf.stack([pt * (1 - track), pt * track, track, muon], axis=-1)
            is_pt = tf.constant([1.0, 1.0, 0.0, 0.0])
        else:
            by_type = [pt * tf.cast(tf.equal(ptype, code), tf.float32) for code in range(1, 6)]
            channels = tf.stack(by_type + [track, m * (1 - track)], axis=-1)
            is_pt = tf.constant([1.0] * 5 + [0.0] * 2)
    if mode == "jet":
        scale = tf.reduce_sum(pt, axis=-1)[:, None, None]
        channels = tf.math.divide_no_nan(channels * is_pt, scale) + channels * (1 - is_pt)
    elif mode == "none":
        channels = channels * (is_pt / pt_unit + (1 - is_pt))
    img = pixelize(x, y, channels, f["mask"], npix=npix, half_width=half_width)
    if mode == "channel":
        img = tf.math.divide_no_nan(img, tf.reduce_sum(img, axis=[1, 2], keepdims=True))
    return img


def pixelize(x: tf.Tensor, y: tf.Tensor, values: tf.Tensor, mask: tf.Tensor, *, npix: int,
             half_width: float) -> tf.Tensor:
    """``(batch, npix, npix, channels)``: ``values`` ``(batch, n, channels)`` summed per pixel.

    Element ``(b, k)`` lands in row ``floor((y + w) / 2w · npix)`` and column
    ``floor((x + w) / 2w · npix)`` (w = ``half_width``); elements outside the square or not in
    ``mask`` are left out.
    """
    ix = tf.cast(tf.floor((x + half_width) / (2 * half_width) * npix), tf.int32)
    iy = tf.cast(tf.floor((y + half_width) / (2 * half_width) * npix), tf.int32)
    inside = mask & (ix >= 0) & (ix < npix) & (iy >= 0) & (iy < npix)
    batch = tf.shape(x)[0]
    b = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(ix))
    flat = (b * npix + tf.clip_by_value(iy, 0, npix - 1)) * npix + tf.clip_by_value(ix, 0, npix - 1)
    n_ch = values.shape[-1]
    vals = values * tf.cast(inside, tf.float32)[..., None]
    img = tf.math.unsorted_segment_sum(tf.reshape(vals, (-1, n_ch)), tf.reshape(flat, (-1,)), batch * npix * npix)
    return tf.reshape(img, (batch, npix, npix, n_ch))


_COLOURS = ("tracks", "particle_id")
_NORMALIZE_MODES = {True: "channel", False: "none", "channel": "channel", "jet": "jet", "none": "none"}


def _normalize_mode(normalize: bool | str) -> str:
    try:
        return _NORMALIZE_MODES[normalize]
    except (KeyError, TypeError):
        raise ValueError("jet_images: normalize must be True, False, 'channel', 'jet' or 'none'. "
                         f"Received: normalize={normalize!r}") from None


class JetImages:
    """Pipeline transform: ``{"constituents", ["charge", "type"]}`` → ``{"image": ...}`` (+ other features).

    Keyword arguments are those of :func:`jet_images`; the constituents (and charge/type)
    are replaced by the image, other features pass through.
    """

    def __init__(self, *, npix: int = 37, half_width: float = 1.0, center: bool = True, rotate: bool = True,
                 flip: bool = True, normalize: bool | str = True, pt_unit: float = 1.0,
                 colours: bool | str = False) -> None:
        _normalize_mode(normalize)
        if colours not in (False, True, *_COLOURS):
            raise ValueError(f"JetImages: colours must be False, True (= 'tracks') or one of {_COLOURS}. "
                             f"Received: colours={colours!r}")
        self.kwargs = dict(npix=npix, half_width=half_width, center=center, rotate=rotate, flip=flip,
                           normalize=normalize, pt_unit=pt_unit)
        self.colours = colours

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(features)
        c = out.pop("constituents")
        charge, ptype = out.pop("charge", None), out.pop("type", None)
        if self.colours and (charge is None or ptype is None):
            raise KeyError(f"JetImages(colours={self.colours!r}) needs 'charge' and 'type' features. "
                           f"Received: {sorted(features)}")
        scheme = "tracks" if self.colours is True else self.colours or "tracks"
        out["image"] = jet_images(c, charge=charge if self.colours else None,
                                  ptype=ptype if self.colours else None, colours=scheme, **self.kwargs)
        return out

    def get_config(self) -> dict[str, Any]:
        return {**self.kwargs, "colours": self.colours}


class ConstituentFeatures:
    """Pipeline transform: constituents → ``(batch, n, 7)`` particle features for PFN/ParticleNet.

    Features per constituent: Δη, Δφ, log pT, log E, log pT/pT_jet, log E/E_jet, ΔR; plus
    ``points`` (Δη, Δφ), ``z`` (pT / pT_jet, for Energy Flow Networks) and ``mask`` (float,
    ``(batch, n, 1)``, 1 for real constituents).

    Args:
        max_particles: Keep the first ``max_particles`` constituents (the hardest ones:
            constituents are stored pT-ordered). Jet-level quantities still use all of
            them. ``None`` keeps every slot. ParticleNet's top-tagging study used up to 100.
        particle_id: Append the charge and five type flags (photon, neutral hadron,
            charged hadron, electron, muon; ``hepflow.physics.detector``) to the features,
            13 in all — the "PFN-ID" inputs of Komiske, Metodiev & Thaler. Needs the
            ``charge`` and ``type`` keys, which are then consumed.
    """

    def __init__(self, *, max_particles: int | None = None, particle_id: bool = False) -> None:
        if max_particles is not None and max_particles < 1:
            raise ValueError(f"max_particles must be ≥ 1 or None. Received: max_particles={max_particles}")
        self.max_particles = max_particles
        self.particle_id = particle_id

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(features)
        f = constituent_features(out.pop("constituents"))
        columns = [f[k] for k in ("delta_eta", "delta_phi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r")]
        if self.particle_id:
            if "charge" not in out or "type" not in out:
                raise KeyError("ConstituentFeatures(particle_id=True) needs 'charge' and 'type' features "
                               f"(add them to the sample keys). Received: {sorted(features)}")
            real = tf.cast(f["mask"], tf.float32)
            ptype = tf.cast(out.pop("type"), tf.int32)
            columns.append(tf.cast(out.pop("charge"), tf.float32) * real)
            columns += [tf.cast(tf.equal(ptype, code), tf.float32) * real for code in range(1, 6)]
        particles = tf.stack(columns, axis=-1)
        points = tf.stack([f["delta_eta"], f["delta_phi"]], axis=-1)
        mask = tf.cast(f["mask"], tf.float32)
        z = tf.exp(f["log_pt_rel"]) * mask
        if self.max_particles is not None:
            particles, points, mask, z = (t[:, :self.max_particles] for t in (particles, points, mask, z))
        out.update(particles=particles, points=points, z=z, mask=mask[..., None])
        return out

    def get_config(self) -> dict[str, Any]:
        return {"max_particles": self.max_particles, "particle_id": self.particle_id}


class HighLevelFeatures:
    """Pipeline transform: ``tau`` (τ1, τ2, τ3) → ``tau21``, ``tau32``; jet ``mass`` and ``pt``.

    ``mass`` and ``pt`` pass through when the files hold them; otherwise they are computed
    from ``constituents``, which is then dropped. Features: ``mass``, ``pt``, ``tau21``, ``tau32``.
    """

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(features)
        if "tau" not in out:
            raise KeyError(f"HighLevelFeatures needs a 'tau' feature (τ1, τ2, τ3). Received: {sorted(features)}")
        out.update(nsubjettiness_ratios(out.pop("tau")))
        constituents = out.pop("constituents", None)
        missing = [k for k in ("mass", "pt") if k not in out]
        if missing:
            if constituents is None:
                raise KeyError(f"HighLevelFeatures needs {missing} or 'constituents' to compute them. "
                               f"Received: {sorted(features)}")
            kin = jet_kinematics(constituents)
            out.update({k: kin[k] for k in missing})
        for k in ("mass", "pt"):
            out[k] = tf.cast(out[k], tf.float32)
        return out

    def get_config(self) -> dict[str, Any]:
        return {}
