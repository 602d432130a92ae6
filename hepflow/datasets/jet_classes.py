"""``jet_classes``: jets of several processes with their clustering trees (tfds builder).

Configs (generated with Pythia 8 + FastJet in the top-tagging selection, R = 0.8 anti-kT,
550 < pT < 650 GeV, the simple detector; ``hepflow.physics.pythia_jets``, ``--trees``):

* ``jets5`` (default): five classes, q, g, W, Z, t (labels 0-4): quark and gluon jets recoiling
  against Z → νν and matched to the hard parton, hadronic W and Z recoiling against a jet and
  matched to the boson and its quarks, hadronic tops from tt̄;
* ``w_vs_qcd``: W (label 1) against QCD dijets (label 0), the seed's W-tagging comparison.

Every example holds ``constituents`` (200, 4), ``mass``, ``pt``, ``n_constituents``, the
trees ``tree_ca``, ``tree_kt``, ``tree_antikt``, ``tree_desc_pt`` (199, 2), the C/A Lund
coordinates ``lund`` (199, 5) and ``lund_primary`` (199,) (:mod:`hepflow.physics.jet_trees`),
and ``label``. Default sizes: 800 / 100 / 100 jets per class for train / validation / test
(about 2 minutes on 2 cores for ``jets5``); others through :class:`JetClassesConfig`. Needs
``[pythia]``.
"""
from __future__ import annotations

import dataclasses
import glob
import os

import h5py
import numpy as np
import tensorflow_datasets as tfds

from hepflow.physics.jet_trees import TREE_ALGORITHMS
from hepflow.datasets.engines import beam_chunk_examples, check_engine, chunk_name
from hepflow.physics.pythia_jets import JetSettings, chunk_jobs, generate_chunk, generate_jets

__all__ = ["Builder", "JetClassesConfig"]

_CITATION = """@article{Louppe:2017ipp,
  author = {Louppe, Gilles and Cho, Kyunghyun and Becot, Cyril and Cranmer, Kyle},
  title = {{QCD-Aware Recursive Neural Networks for Jet Physics}},
  journal = {JHEP}, volume = {01}, pages = {057}, year = {2019}, eprint = {1702.00748}}"""

_FEATURES = ("constituents", "mass", "pt", "n_constituents", *(f"tree_{a}" for a in TREE_ALGORITHMS), "lund",
             "lund_primary")


@dataclasses.dataclass
class JetClassesConfig(tfds.core.BuilderConfig):
    """Classes and sizes of a ``jet_classes`` config.

    Attributes:
        classes: Process names in label order (``hepflow.physics.pythia_jets.PROCESSES``).
        class_names: Their names in the ClassLabel.
        n_train, n_validation, n_test: Jets per class and split.
        seed: Run seed; the splits use ``seed``, ``seed + 1``, ``seed + 2``.
        workers: Generator processes (``engine="processes"``).
        mpi: Multi-parton interactions on.
        engine: ``"processes"`` (a local process pool writes chunk files) or ``"beam"`` (the chunks
            are the elements of an Apache Beam pipeline; same examples under the same keys), as in
            :class:`hepflow.datasets.top_tagging.TopTaggingConfig`.
    """

    classes: tuple[str, ...] = ("quark", "gluon", "w", "z", "top")
    class_names: tuple[str, ...] = ("q", "g", "W", "Z", "t")
    n_train: int = 800
    n_validation: int = 100
    n_test: int = 100
    seed: int = 1
    workers: int = 2
    mpi: bool = True
    engine: str = "processes"


def _examples_from_arrays(prefix: str, cols: dict[str, np.ndarray], label: int):
    """``(key, example)`` of one chunk's jets; keys ``<chunk file name>:<row>`` whatever made the chunk."""
    for i in range(len(cols["mass"])):
        yield f"{prefix}:{i}", {**{k: cols[k][i] for k in _FEATURES}, "label": label}


def _beam_chunk_examples(job: tuple[str, int, int, int], labels: dict[str, int], settings: JetSettings):
    """A Beam worker's share: one chunk generated in memory, as examples (module level: pickled to workers)."""
    process, index, n, seed = job
    arrays, _ = generate_chunk(process, n, seed, settings)
    yield from _examples_from_arrays(chunk_name(process, index), arrays, labels[process])


class Builder(tfds.core.GeneratorBasedBuilder):
    """Jets of several processes with trees and Lund coordinates; label = the class index."""

    name = "jet_classes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: jets5 (q, g, W, Z, t) and w_vs_qcd, generated."}
    BUILDER_CONFIGS = [
        JetClassesConfig(name="jets5", description="Five classes: quark, gluon, W, Z, top."),
        JetClassesConfig(name="w_vs_qcd", classes=("qcd", "w"), class_names=("QCD", "W"),
                         description="W jets against QCD dijets."),
    ]
    DEFAULT_CONFIG_NAME = "jets5"

    def _info(self) -> tfds.core.DatasetInfo:
        f = tfds.features
        feats = {
            "constituents": f.Tensor(shape=(200, 4), dtype=np.float32),
            "mass": f.Scalar(dtype=np.float32),
            "pt": f.Scalar(dtype=np.float32),
            "n_constituents": f.Scalar(dtype=np.int32),
            **{f"tree_{a}": f.Tensor(shape=(199, 2), dtype=np.int16) for a in TREE_ALGORITHMS},
            "lund": f.Tensor(shape=(199, 5), dtype=np.float32),
            "lund_primary": f.Tensor(shape=(199,), dtype=np.bool_),
            "label": f.ClassLabel(names=list(self.builder_config.class_names)),
        }
        return self.dataset_info_from_configs(features=f.FeaturesDict(feats), supervised_keys=("constituents", "label"),
                                              homepage="https://github.com/hepflow", citation=_CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        check_engine(cfg)
        settings = dataclasses.replace(JetSettings(), mpi=cfg.mpi, trees=True)
        out = {}
        for k, (split, n) in enumerate((("train", cfg.n_train), ("validation", cfg.n_validation),
                                        ("test", cfg.n_test))):
            counts, chunk_jets = {p: n for p in cfg.classes}, max(1, min(500, n))
            if cfg.engine == "beam":
                jobs = chunk_jobs(counts, chunk_jets=chunk_jets, seed=cfg.seed + k)
                labels = {p: i for i, p in enumerate(cfg.classes)}
                out[split] = beam_chunk_examples(split, jobs, _beam_chunk_examples, labels=labels, settings=settings)
                continue
            folder = os.path.join(dl_manager.download_dir, f"hepflow_jet_classes_{cfg.name}_{split}")
            generate_jets(folder, counts=counts, workers=cfg.workers, chunk_jets=chunk_jets, seed=cfg.seed + k,
                          settings=settings, progress=False, dataset=f"jet_classes/{cfg.name}")
            out[split] = self._generate_examples(folder)
        return out

    def _generate_examples(self, folder: str):
        for label, process in enumerate(self.builder_config.classes):
            for path in sorted(glob.glob(os.path.join(folder, f"{process}_*.h5"))):
                with h5py.File(path, "r") as f:
                    cols = {k: f[k][...] for k in _FEATURES}
                yield from _examples_from_arrays(os.path.basename(path), cols, label)
