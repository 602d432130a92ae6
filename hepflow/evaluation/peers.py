"""Peer comparison: the Particle Flow Network of the published ``energyflow`` package.

``energyflow`` (Komiske, Metodiev, Thaler) builds its PFN with ``tf_keras`` (Keras 2). hepflow
trains it on exactly the batches its own PFN run saw — the same files, transform, batch size,
epochs and steps, through the same pipeline — and scores the same test records, so the two
differ only in the implementation. Needs the ``[peers]`` extra (``make install-peers``).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepflow.data import RECORD_ID, make_dataset
from hepflow.evaluation.runs import sort_by_record

__all__ = ["require_energyflow", "energyflow_pfn_scores"]


def require_energyflow():
    """Imports ``energyflow.archs``, or says which extra to install."""
    try:
        import energyflow.archs
    except ImportError as e:
        raise ImportError("The energyflow peer comparison needs the [peers] extra: `make install-peers` "
                          "(energyflow and tf-keras, with energyflow's Wasserstein rebuilt against NumPy 2). "
                          f"Received: {e}") from None
    return energyflow.archs


def energyflow_pfn_scores(config: Mapping[str, Any], summary: Mapping[str, Any], *, progress: bool = True
                          ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Trains energyflow's PFN with the budget of a hepflow PFN run and scores its test split.

    Args:
        config: The resolved config of a ``particle_flow_network`` run.
        summary: That run's ``summary.json`` (its ``epochs`` set the peer's budget).
        progress: Keras progress output.

    Returns:
        ``(record_ids, scores, info)`` sorted by record id; ``info`` has ``params``,
        ``train_seconds``, ``epochs`` and ``train_jets_seen``.
    """
    import tensorflow as tf

    from hepflow.training.config import build_transform, split_specs

    archs = require_energyflow()
    if config["model"]["name"] != "particle_flow_network":
        raise ValueError(f"The energyflow peer needs a particle_flow_network run. Received: {config['model']['name']}")
    args = dict(config["model"].get("args") or {})
    seed, tcfg = int(config["seed"]), config["training"]
    tf.keras.utils.set_random_seed(seed)
    splits, transform = split_specs(config), build_transform(config)
    batch_size, steps = int(tcfg["batch_size"]), tcfg.get("steps_per_epoch")

    def two_class(ds):  # energyflow's PFN takes particles (zero-padded) and one-hot labels
        return ds.map(lambda x, y: (x["particles"], tf.one_hot(tf.cast(y, tf.int32), 2)))

    train = make_dataset(splits["train"], batch_size=batch_size, transform=transform,
                         epoch=int(steps) if steps else "shortest", seed=seed, cache=tcfg.get("cache"))
    pfn = archs.PFN(input_dim=int(args.get("n_features", 7)), Phi_sizes=tuple(args.get("phi_sizes", (100, 100, 256))),
                    F_sizes=tuple(args.get("f_sizes", (100, 100, 100))), summary=False)
    epochs = int(summary.get("epochs") or tcfg["epochs"])
    t0 = time.perf_counter()
    pfn.fit(two_class(train), epochs=epochs, verbose=2 if progress else 0)
    train_seconds = time.perf_counter() - t0
    test = make_dataset(splits["test"], batch_size=1024, transform=transform, epoch="all", shuffle=0,
                        drop_remainder=False, with_record_id=True)
    ids, scores = [], []
    for x, _ in test:
        scores.append(pfn.model(x["particles"], training=False).numpy()[:, 1])
        ids.append(x[RECORD_ID].numpy())
    ids_sorted, scores_sorted = sort_by_record(np.concatenate(ids), np.concatenate(scores))
    info = {"params": int(pfn.model.count_params()), "train_seconds": round(train_seconds, 1), "epochs": epochs,
            "train_jets_seen": epochs * len(train) * batch_size}
    return ids_sorted, scores_sorted, info
