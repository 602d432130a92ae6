"""``lhc_events``: whole collision events as object lists, standard model and new physics (tfds builder).

Events of :mod:`hepflow.physics.events` (Pythia 8 at 13 TeV, the object-level detector, the
single-lepton trigger): every example holds ``objects`` (23, 3) (pT, η, φ of MET, 4 electrons,
4 muons, 4 photons, 10 jets), ``object_type``, ``object_tags``, ``mask``, the counts, ``met``,
``ht``, ``label`` (the process, in the order of the config's ``processes``) and ``rate_pb``, the
process's cross section × trigger efficiency: weight an event by ``rate_pb`` / (events of its
process in the split) to get the processes in their natural proportions.

Configs:

* ``cocktail`` (default): w, z, ttbar, diboson, qcd and the signals zprime, leptoquark, h_tautau;
  400 / 100 / 200 events of each SM process and 50 / 50 / 100 of each signal for train /
  validation / test (a few minutes on 2 cores). Other sizes through :class:`LhcEventsConfig`.
* ``sm``: the five SM processes alone.

Needs ``[pythia]``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os

import h5py
import numpy as np
import tensorflow_datasets as tfds

from hepflow.physics.events import N_SLOTS, SIGNALS, EventSettings, generate_events

__all__ = ["Builder", "LhcEventsConfig"]

_CITATION = """@article{Govorkova:2021hqu,
  author = {Govorkova, Ekaterina and others},
  title = {{LHC physics dataset for unsupervised New Physics detection at 40 MHz}},
  journal = {Sci. Data}, volume = {9}, pages = {118}, year = {2022}, eprint = {2107.02157}}"""

_SM = ("w", "z", "ttbar", "diboson", "qcd")
_COUNTS = ("n_electrons", "n_muons", "n_photons", "n_jets", "n_bjets", "n_tau_jets")


@dataclasses.dataclass
class LhcEventsConfig(tfds.core.BuilderConfig):
    """Processes and sizes of an ``lhc_events`` config.

    Attributes:
        processes: Process names in label order (``hepflow.physics.events.EVENT_PROCESSES``).
        n_train, n_validation, n_test: Events per standard-model process and split.
        n_signal: Events per signal process for train / validation / test.
        seed: Run seed; the splits use ``seed``, ``seed + 1``, ``seed + 2``.
        workers: Generator processes.
        mpi: Multi-parton interactions on.
    """

    processes: tuple[str, ...] = _SM + SIGNALS
    n_train: int = 400
    n_validation: int = 100
    n_test: int = 200
    n_signal: tuple[int, int, int] = (50, 50, 100)
    seed: int = 1
    workers: int = 2
    mpi: bool = True


class Builder(tfds.core.GeneratorBasedBuilder):
    """Events as padded object lists with masks; label = the process index in the config."""

    name = "lhc_events"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: cocktail (SM and signals) and sm, generated."}
    BUILDER_CONFIGS = [
        LhcEventsConfig(name="cocktail", description="W, Z, tt̄, dibosons, QCD and three signals."),
        LhcEventsConfig(name="sm", processes=_SM, description="The standard-model processes alone."),
    ]
    DEFAULT_CONFIG_NAME = "cocktail"

    def _info(self) -> tfds.core.DatasetInfo:
        f = tfds.features
        feats = {
            "objects": f.Tensor(shape=(N_SLOTS, 3), dtype=np.float32),
            "object_type": f.Tensor(shape=(N_SLOTS,), dtype=np.int8),
            "object_tags": f.Tensor(shape=(N_SLOTS,), dtype=np.int8),
            "mask": f.Tensor(shape=(N_SLOTS,), dtype=np.bool_),
            **{k: f.Scalar(dtype=np.int32) for k in _COUNTS},
            "met": f.Tensor(shape=(2,), dtype=np.float32),
            "ht": f.Scalar(dtype=np.float32),
            "rate_pb": f.Scalar(dtype=np.float32),
            "label": f.ClassLabel(names=list(self.builder_config.processes)),
        }
        return self.dataset_info_from_configs(features=f.FeaturesDict(feats), supervised_keys=("objects", "label"),
                                              homepage="https://github.com/hepflow", citation=_CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        settings = dataclasses.replace(EventSettings(), mpi=cfg.mpi)
        out = {}
        for k, split in enumerate(("train", "validation", "test")):
            n_sm = (cfg.n_train, cfg.n_validation, cfg.n_test)[k]
            counts = {p: (cfg.n_signal[k] if p in SIGNALS else n_sm) for p in cfg.processes}
            counts = {p: n for p, n in counts.items() if n > 0}
            folder = os.path.join(dl_manager.download_dir, f"hepflow_lhc_events_{cfg.name}_{split}")
            generate_events(folder, counts=counts, workers=cfg.workers, chunk_events=max(1, min(500, min(counts.values()))),
                            seed=cfg.seed + k, settings=settings, progress=False)
            out[split] = self._generate_examples(folder)
        return out

    def _generate_examples(self, folder: str):
        with open(os.path.join(folder, "manifest.json")) as f:
            rates = {p: v["rate_pb"] for p, v in json.load(f)["processes"].items()}
        keys = ("objects", "object_type", "object_tags", "mask", *_COUNTS, "met", "ht")
        for label, process in enumerate(self.builder_config.processes):
            for path in sorted(glob.glob(os.path.join(folder, f"{process}_*.h5"))):
                with h5py.File(path, "r") as f:
                    cols = {k: f[k][...] for k in keys}
                for i in range(len(cols["mask"])):
                    yield f"{os.path.basename(path)}:{i}", {**{k: cols[k][i] for k in keys}, "label": label,
                                                            "rate_pb": np.float32(rates[process])}
