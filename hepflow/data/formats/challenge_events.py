"""The 2021 LHC anomaly-detection data challenge's event files (Govorkova et al., arXiv:2107.02157).

Each file holds ``Particles``, float ``(N, 19, 4)``: per event the missing transverse energy,
up to 4 electrons, 4 muons and 10 jets, each as (pT, η, φ, class) with class 1 MET, 2 electron,
3 muon, 4 jet, hardest first within a type and zero-padded (class 0); MET's η is 0.
:func:`write_challenge` writes hepflow's event arrays in that layout (photons and tags have no
place there and are dropped) and :func:`read_challenge` reads such a file back into hepflow's
slots (:mod:`hepflow.physics.events`), so users with the challenge's files take the same path.
"""
from __future__ import annotations

import h5py
import numpy as np

from hepflow.errors import DataError
from hepflow.io import atomic_path

__all__ = ["CHALLENGE_BLOCKS", "write_challenge", "read_challenge"]

#: (hepflow object type code, slots, challenge class) of the challenge's blocks, in order.
CHALLENGE_BLOCKS = ((1, 1, 1), (2, 4, 2), (3, 4, 3), (4, 10, 4))
_HEPFLOW_ORDER = (("met", 1, 1), ("electron", 4, 2), ("muon", 4, 3), ("photon", 4, 5), ("jet", 10, 4))


def _block_starts() -> dict[int, int]:
    starts, at = {}, 0
    for _, n, code in _HEPFLOW_ORDER:
        starts[code] = at
        at += n
    return starts


def write_challenge(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes hepflow's ``objects`` and ``object_type`` as the challenge's ``Particles`` (atomically)."""
    objects, types = np.asarray(arrays["objects"], np.float32), np.asarray(arrays["object_type"])
    starts = _block_starts()
    blocks = []
    for code, n, cls in CHALLENGE_BLOCKS:
        o = objects[:, starts[code]:starts[code] + n]
        real = types[:, starts[code]:starts[code] + n] == code
        blocks.append(np.concatenate([o * real[..., None], np.where(real, cls, 0)[..., None]], axis=-1))
    particles = np.concatenate(blocks, axis=1).astype(np.float32)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("Particles", data=particles)
        f.create_dataset("Particles_Names", data=np.array([b"Pt", b"Eta", b"Phi", b"Class"]))
        f.create_dataset("Particles_Classes", data=np.array([b"MET_class_1", b"Four_Ele_class_2",
                                                             b"Four_Mu_class_3", b"Ten_Jet_class_4"]))


def read_challenge(path: str) -> dict[str, np.ndarray]:
    """A challenge file's events in hepflow's slots: ``objects``, ``object_type``, ``object_tags``, ``mask``, counts.

    Raises:
        DataError: no ``Particles`` of shape (N, 19, 4), or a class code where the layout has none.
    """
    with h5py.File(path, "r") as f:
        if "Particles" not in f:
            raise DataError(f"{path}: no 'Particles' dataset (the challenge's layout). Received keys: {sorted(f)}")
        p = f["Particles"][...]
    if p.ndim != 3 or p.shape[1:] != (19, 4):
        raise DataError(f"{path}: 'Particles' must be (N, 19, 4). Received: shape {p.shape}")
    n = len(p)
    objects, types = np.zeros((n, 23, 3), np.float32), np.zeros((n, 23), np.int8)
    starts, at = _block_starts(), 0
    for code, slots, cls in CHALLENGE_BLOCKS:
        block = p[:, at:at + slots]
        bad = ~np.isin(block[..., 3], (0, cls))
        if bad.any():
            row, slot = np.argwhere(bad)[0]
            raise DataError(f"{path}: event {row}, slot {at + slot} has class {block[row, slot, 3]:g}; that block "
                            f"holds class {cls} or 0 (padding). Received: {block[row, slot].tolist()}")
        real = block[..., 3] == cls
        objects[:, starts[code]:starts[code] + slots] = block[..., :3] * real[..., None]
        types[:, starts[code]:starts[code] + slots] = np.where(real, code, 0)
        at += slots
    counts = {f"n_{k}": (types == c).sum(1).astype(np.int32)
              for k, c in (("electrons", 2), ("muons", 3), ("photons", 5), ("jets", 4))}
    jets = types == 4
    return {"objects": objects, "object_type": types, "object_tags": np.zeros((n, 23), np.int8), "mask": types > 0,
            **counts, "met": objects[:, 0, ::2].copy(), "ht": (objects[..., 0] * jets).sum(1).astype(np.float32)}
