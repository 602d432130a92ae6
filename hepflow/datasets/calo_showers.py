"""``calo_showers``: e+, γ and π+ showers in the CaloGAN calorimeter (tfds builder).

Configs:

* ``eplus``, ``gamma``, ``piplus`` (``eplus`` is the default): showers simulated by hepflow's
  parametrized simulation (``hepflow.physics.calo_sim``), 1–100 GeV uniform, 2000/250/250
  train/validation/test by default (seconds on one core); other sizes through
  ``CaloShowersConfig``.
* ``reference``: the published CaloGAN files ``eplus.hdf5``, ``gamma.hdf5`` and ``piplus.hdf5``
  from the manual directory, all three particles together, split 80/10/10 by row order.

Every example: ``layer_0`` (3, 96), ``layer_1`` (12, 12), ``layer_2`` (12, 6), ``energy`` (GeV),
``overflow`` (3,) and ``particle`` (eplus, gamma, piplus).
"""
from __future__ import annotations

import dataclasses
import glob
import os

import h5py
import numpy as np
import tensorflow_datasets as tfds

from hepflow.data.formats import read_calogan
from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.physics.calo_generate import generate_calo_showers

__all__ = ["Builder", "CaloShowersConfig"]

PARTICLES = ("eplus", "gamma", "piplus")
_CITATION = """@article{Paganini:2017dwg,
  author = {Paganini, Michela and de Oliveira, Luke and Nachman, Benjamin},
  title = {{CaloGAN}: Simulating 3D high energy particle showers in multilayer electromagnetic calorimeters
           with generative adversarial networks},
  journal = {Phys. Rev. D}, volume = {97}, pages = {014021}, year = {2018}, eprint = {1712.10321}}"""


@dataclasses.dataclass
class CaloShowersConfig(tfds.core.BuilderConfig):
    """Sizes of a ``calo_showers`` config.

    Attributes:
        source: ``"generated"`` or ``"reference"``.
        particle: The particle of a generated config.
        n_train, n_validation, n_test: Showers per split (generated).
        seed: Run seed; the splits use ``seed``, ``seed + 1``, ``seed + 2``.
    """

    source: str = "generated"
    particle: str = "eplus"
    n_train: int = 2000
    n_validation: int = 250
    n_test: int = 250
    seed: int = 1


class Builder(tfds.core.GeneratorBasedBuilder):
    """Calorimeter showers in the CaloGAN layout, with the incident energy and the particle."""

    name = "calo_showers"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: generated e+/γ/π+ configs and the published reference files."}
    BUILDER_CONFIGS = [
        *(CaloShowersConfig(name=p, particle=p, description=f"{p} showers from hepflow's parametrized simulation.")
          for p in PARTICLES),
        CaloShowersConfig(name="reference", source="reference",
                          description="The published CaloGAN files from the manual directory."),
    ]
    DEFAULT_CONFIG_NAME = "eplus"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "For the `reference` config, place the published CaloGAN files eplus.hdf5, gamma.hdf5 and "
        "piplus.hdf5 in the manual directory (default ~/tensorflow_datasets/downloads/manual/). "
        "The generated configs need no files."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        f = tfds.features
        feats = f.FeaturesDict({
            **{name: f.Tensor(shape=shape, dtype=np.float32) for name, shape in CALOGAN_LAYERS.items()},
            "energy": f.Scalar(dtype=np.float32),
            "overflow": f.Tensor(shape=(3,), dtype=np.float32),
            "particle": f.ClassLabel(names=list(PARTICLES)),
        })
        return self.dataset_info_from_configs(features=feats, homepage="https://github.com/hepflow",
                                              citation=_CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        if cfg.source == "reference":
            paths = [os.path.join(dl_manager.manual_dir, f"{p}.hdf5") for p in PARTICLES]
            return {split: self._generate_examples(paths, lo=lo, hi=hi)
                    for split, lo, hi in (("train", 0.0, 0.8), ("validation", 0.8, 0.9), ("test", 0.9, 1.0))}

        out = {}
        for k, (split, n) in enumerate((("train", cfg.n_train), ("validation", cfg.n_validation),
                                        ("test", cfg.n_test))):
            folder = os.path.join(dl_manager.download_dir, f"hepflow_calo_showers_{cfg.name}_{split}")
            generate_calo_showers(folder, particles=[cfg.particle], n_showers=n, chunk_showers=max(1, min(5000, n)),
                                  workers=1, seed=cfg.seed + k, progress=False)
            out[split] = self._generate_examples(sorted(glob.glob(os.path.join(folder, f"{cfg.particle}_*.h5"))),
                                                 particle=cfg.particle)
        return out

    def _generate_examples(self, paths: list[str], particle: str | None = None, lo: float = 0.0, hi: float = 1.0):
        """Generated chunk files of one particle, or rows [lo, hi) of the three reference files."""
        if particle is None:
            return self._examples_reference(paths, lo, hi)
        return self._examples_generated(paths, particle)

    def _examples_generated(self, paths: list[str], particle: str):
        for path in paths:
            a = read_calogan(path)
            for i in range(len(a["energy"])):
                yield f"{os.path.basename(path)}:{i}", self._example(a, i, particle)

    def _examples_reference(self, paths: list[str], lo: float, hi: float):
        for particle, path in zip(PARTICLES, paths):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
            with h5py.File(path, "r") as f:
                n = len(f["energy"])
            start, stop = int(round(lo * n)), int(round(hi * n))
            a = read_calogan(path, start=start, stop=stop)
            for i in range(stop - start):
                yield f"{particle}:{start + i}", self._example(a, i, particle)

    @staticmethod
    def _example(a: dict, i: int, particle: str) -> dict:
        return {"layer_0": a["layer_0"][i], "layer_1": a["layer_1"][i], "layer_2": a["layer_2"][i],
                "energy": float(a["energy"][i, 0]), "overflow": a["overflow"][i], "particle": particle}
