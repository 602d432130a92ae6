"""Whole events as padded object lists, as TF ops and pipeline transforms.

An event file of ``hepflow generate events`` holds per event ``objects`` ``(23, 3)`` (pT, η, φ)
in fixed slots — MET, 4 electrons, 4 muons, 4 photons, 10 jets, each type hardest first —
with ``object_type`` (0 empty, 1 MET, 2 e, 3 μ, 4 jet, 5 γ), ``object_tags`` (1 b-tag, 2 τ-tag)
and ``mask``. The 2021 anomaly-detection challenge's files hold ``Particles`` ``(19, 4)``
(pT, η, φ, class: MET, 4 e, 4 μ, 10 jets); :class:`ChallengeObjects` maps them onto the same
slots (no photons, no tags), so both feed the same models.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from hepflow.physics.events import N_SLOTS, OBJECT_TYPES, SLOTS, TAG_B, TAG_TAU

__all__ = ["EVENT_FEATURES", "event_features", "EventFeatures", "challenge_objects", "ChallengeObjects"]

#: The per-object features of :func:`event_features`, in order.
EVENT_FEATURES = ("real", "log_pt", "eta", "cos_phi", "sin_phi", "is_met", "is_electron", "is_muon", "is_jet",
                  "is_photon", "b_tag", "tau_tag")
_CHALLENGE_BLOCKS = (("met", 1, 1), ("electron", 4, 2), ("muon", 4, 3), ("jet", 10, 4))  # type, slots, class


def event_features(objects: tf.Tensor, object_type: tf.Tensor, object_tags: tf.Tensor | None = None) -> tf.Tensor:
    """``(batch, slots, 12)`` per-object features (:data:`EVENT_FEATURES`), zero in empty slots.

    ``real`` is 1 for an object (set encoders read it as the mask), ``log_pt`` is ln(1 + pT/GeV),
    η is divided by 3, φ enters as (cos φ, sin φ) so that it has no edge, the type is one-hot.
    """
    o = tf.cast(objects, tf.float32)
    t = tf.cast(object_type, tf.int32)
    real = tf.cast(t > 0, tf.float32)
    columns = [real, tf.math.log1p(tf.maximum(o[..., 0], 0.0)) * real, o[..., 1] / 3.0 * real,
               tf.cos(o[..., 2]) * real, tf.sin(o[..., 2]) * real]
    columns += [tf.cast(tf.equal(t, code), tf.float32) for code in (1, 2, 3, 4, 5)]
    tags = tf.zeros_like(t) if object_tags is None else tf.cast(object_tags, tf.int32)
    columns += [tf.cast(tf.bitwise.bitwise_and(tags, bit) > 0, tf.float32) * real for bit in (TAG_B, TAG_TAU)]
    return tf.stack(columns, axis=-1)


class EventFeatures:
    """Pipeline transform: ``objects``, ``object_type`` (and ``object_tags``) → ``event`` ``(batch, 23, 12)``.

    The inputs are consumed; ``mask`` and the counts pass through.
    """

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        missing = [k for k in ("objects", "object_type") if k not in features]
        if missing:
            raise KeyError("EventFeatures needs 'objects' and 'object_type' (files of `hepflow generate events`, or "
                           f"the challenge_objects transform first). Received: {sorted(features)}")
        out = dict(features)
        out["event"] = event_features(out.pop("objects"), out.pop("object_type"), out.pop("object_tags", None))
        return out

    def get_config(self) -> dict[str, Any]:
        return {}


def challenge_objects(particles: tf.Tensor) -> dict[str, tf.Tensor]:
    """The challenge's ``Particles`` ``(batch, 19, 4)`` as hepflow's slots (photon slots empty, no tags).

    A slot is an object when its class is the block's (padding has class 0 and pT 0).
    """
    p = tf.cast(particles, tf.float32)
    batch = tf.shape(p)[0]
    objects, types = [], []
    start = 0
    for kind, n, _ in _CHALLENGE_BLOCKS:
        block = p[:, start:start + n]
        real = tf.cast(block[..., 3] > 0, tf.float32)
        kin = block[..., :3] * real[..., None]
        objects.append(kin)
        types.append(tf.cast(real, tf.int32) * OBJECT_TYPES[kind])
        start += n
        if kind == "muon":  # hepflow's photon slots come after the muons
            objects.append(tf.zeros([batch, SLOTS["photon"], 3]))
            types.append(tf.zeros([batch, SLOTS["photon"]], tf.int32))
    object_type = tf.cast(tf.concat(types, axis=1), tf.int8)
    return {"objects": tf.concat(objects, axis=1), "object_type": object_type,
            "object_tags": tf.zeros([batch, N_SLOTS], tf.int8), "mask": object_type > 0}


class ChallengeObjects:
    """Pipeline transform: the challenge's ``Particles`` → ``objects``, ``object_type``, ``object_tags``, ``mask``."""

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if "Particles" not in features:
            raise KeyError("ChallengeObjects reads the 'Particles' (N, 19, 4) dataset of the 2021 challenge's files. "
                           f"Received: {sorted(features)}")
        out = dict(features)
        out.update(challenge_objects(out.pop("Particles")))
        return out

    def get_config(self) -> dict[str, Any]:
        return {}
