"""Reports made while a run trains, handed to :func:`hepflow.training.train` by its caller.

``hepflow train``, the demo and the studies pass :func:`standard_reporters`; a script that
calls ``train`` itself chooses its own (or none).
"""
from __future__ import annotations

import os

import numpy as np

from hepflow.data import make_dataset
from hepflow.evaluation.generative import generator_monitor
from hepflow.evaluation.report import tagger_report
from hepflow.runs import model_inputs
from hepflow.runs.reporting import Reporter, RunContext

__all__ = ["ValidationROC", "ShowerMonitor", "standard_reporters"]

_SHOWER_KEYS = ("layer_0", "layer_1", "layer_2", "energy")


class ValidationROC(Reporter):
    """Binary classifiers: the final model's ROC curve on the validation files.

    Writes ``validation/roc.png`` (and the report beside it) and logs it to ``tb/validation``.
    """

    def after_training(self, run: RunContext) -> None:
        model, cfg = run.model, run.config
        if cfg["training"]["task"] != "classification" or model.outputs[0].shape[-1] != 1:
            return
        ds = model_inputs(model, make_dataset(run.splits["validation"], batch_size=1024, transform=run.transform,
                                              epoch="all", shuffle=0, seed=int(cfg["seed"])))
        labels, scores = [], []
        for x, y in ds:  # a plain loop: only the chief scores, so no collective ops may run
            scores.append(np.asarray(model(x, training=False)).reshape(-1))
            labels.append(np.asarray(y).reshape(-1))
        labels = np.concatenate(labels)
        if labels.min() == labels.max():
            return
        tagger_report(labels, {cfg["name"]: np.concatenate(scores)}, out_dir=os.path.join(run.out_dir, "validation"),
                      log_dir=os.path.join(run.out_dir, "tb", "validation"))


class ShowerMonitor(Reporter):
    """Generators: shower-shape overlays and average showers of up to 2000 validation showers in
    TensorBoard (``tb/showers``) every ``training.monitor_every`` epochs."""

    def callbacks(self, run: RunContext) -> list:
        if run.config["training"]["task"] != "generative" or not run.chief:
            return []
        ds = make_dataset(run.splits["validation"], batch_size=2000, epoch="all", shuffle=0)
        features, labels = next(iter(ds))
        real = {k: np.asarray(v) for k, v in features.items() if k in _SHOWER_KEYS}
        real["particle"] = np.asarray(labels).reshape(-1).astype(np.int64)  # used by generators of several particles
        every = int(run.config["training"].get("monitor_every") or 5)
        return [generator_monitor(real, os.path.join(run.out_dir, "tb", "showers"), every=every)]


def standard_reporters() -> list[Reporter]:
    """The reports ``hepflow train`` makes: :class:`ValidationROC` and :class:`ShowerMonitor`."""
    return [ValidationROC(), ShowerMonitor()]
