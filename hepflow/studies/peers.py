"""Peer comparison: the Particle Flow Network of the published ``energyflow`` package.

``energyflow`` (Komiske, Metodiev, Thaler) builds its PFN with ``tf_keras`` (Keras 2). hepflow
trains it on exactly the batches its own PFN run saw — the same files, transform, batch size,
epochs and steps, through the same pipeline — and scores the same test records, so the two
differ only in the implementation. Needs the ``[peers]`` extra (``make install-peers``).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from hepflow.data import RECORD_ID, make_dataset
from hepflow.errors import ConfigError
from hepflow.evaluation.runs import evaluate_runs
from hepflow.runs import build_transform, finished_run, sort_by_record, split_specs

__all__ = ["PEERS", "require_energyflow", "energyflow_pfn_scores", "evaluate_with_peers"]

#: The peer packages hepflow compares with.
PEERS = ("energyflow_pfn",)


def require_energyflow():
    """Imports ``energyflow.archs``, or says which extra to install."""
    try:
        import energyflow.archs  # optional extra [peers], only when a peer is asked for
    except ImportError as e:
        raise ImportError("The energyflow peer comparison needs the [peers] extra: `make install-peers` builds "
                          ".venv-peers (energyflow and tf-keras, with energyflow's Wasserstein rebuilt against "
                          "NumPy 2); run `.venv-peers/bin/hepflow evaluate --peer ...`. "
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
    archs = require_energyflow()
    if config["model"]["name"] != "particle_flow_network":
        raise ConfigError(f"The energyflow peer needs a particle_flow_network run. Received: {config['model']['name']}")
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


def evaluate_with_peers(run_dirs: Sequence[str], peers: Sequence[str], **kwargs) -> dict[str, dict[str, float]]:
    """:func:`hepflow.evaluation.runs.evaluate_runs` with peer packages trained and scored alongside.

    Args:
        run_dirs: Run directories; ``energyflow_pfn`` copies the budget of the first
            ``particle_flow_network`` run among them.
        peers: Names from :data:`PEERS`.
        **kwargs: The other arguments of ``evaluate_runs`` (not ``test_dir``: peers train and
            score on the configs' own split).

    Raises:
        ConfigError: an unknown peer, no PFN run to copy, or a test directory.
    """
    if kwargs.get("test_dir") is not None:
        raise ConfigError(f"Peers train and score on the configs' own split; drop --peer with a test directory. "
                          f"Received: peers={list(peers)}, test_dir={kwargs['test_dir']!r}")
    unknown = [peer for peer in peers if peer not in PEERS]
    if unknown:
        raise ConfigError(f"Unknown peer {unknown[0]!r}; expected one of {list(PEERS)}. Received: {list(peers)}")
    runs = [finished_run(d) for d in run_dirs]
    pfn_runs = [r for r in runs if r["config"]["model"]["name"] == "particle_flow_network"]
    if peers and not pfn_runs:
        raise ConfigError("The energyflow_pfn peer copies the budget of a particle_flow_network run; "
                          f"none among {list(run_dirs)}. Received: {list(run_dirs)}")
    extra = {}
    for peer in peers:
        extra[peer] = energyflow_pfn_scores(pfn_runs[0]["config"], pfn_runs[0]["summary"],
                                            progress=kwargs.get("progress", True))
    return evaluate_runs(run_dirs, extra_scores=extra, **kwargs)
