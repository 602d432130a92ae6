"""``train``: one config in, one run directory out.

The run directory holds everything needed to inspect, evaluate or reproduce the run::

    config.yaml        the resolved config (defaults and overrides applied)
    samples.yaml       the train/validation/test files of every sample, with sizes and mtimes
    environment.json   package versions, git revision, host, start and end time
    history.csv        loss and metrics per epoch
    best.keras         the model with the lowest validation loss so far
    model.keras        the final model (best weights when early stopping restores them)
    summary.json       parameters, training time, jets seen, final metrics
    tb/                TensorBoard logs
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import yaml

from hepflow.data import DataError, make_dataset
from hepflow.training.config import (build_model, build_optimizer, build_transform, load_config, split_specs)

__all__ = ["train", "model_inputs", "write_atomic", "RUN_FILES"]

RUN_FILES = ("config.yaml", "samples.yaml", "environment.json", "history.csv", "model.keras", "summary.json")


def write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def model_inputs(model, dataset, *, target: str | None = None, target_scale: float = 1.0):
    """Maps ``(features, label, ...)`` batches to the model's named inputs, with a clear error for missing ones.

    Args:
        target: For regression: the feature that becomes the label (divided by
            ``target_scale``, flattened to ``(batch,)``) in place of the sample label.
    """
    names = [t.name for t in model.inputs]
    have = set(dataset.element_spec[0])
    missing = [n for n in names + ([target] if target else []) if n not in have]
    if missing:
        raise DataError(f"Model '{model.name}' needs inputs {names}" + (f" and the target '{target}'" if target else "")
                        + f"; the pipeline gives {sorted(have)} (missing {missing}). "
                        "Check the config's `transform` and the samples' `keys`.")
    if target:
        return dataset.map(lambda x, y, *rest: ({n: x[n] for n in names},
                                                tf.reshape(tf.cast(x[target], tf.float32), [-1]) / target_scale,
                                                *rest))
    return dataset.map(lambda x, *rest: ({n: x[n] for n in names}, *rest))


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("hepflow", "tensorflow-cpu", "tensorflow", "keras", "numpy", "h5py"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _git_revision() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _samples_record(splits: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, specs in splits.items():
        out[split] = []
        for spec in specs:
            d = spec.to_dict()
            d["files"] = [{"path": p, "size": os.path.getsize(p), "mtime": os.path.getmtime(p)} for p in spec.files]
            out[split].append(d)
    return out


def _run_dir(cfg: Mapping[str, Any], run_dir: str | None, overwrite: bool) -> str:
    run_dir = run_dir or os.path.join("runs", cfg["name"])
    if os.path.exists(os.path.join(run_dir, "model.keras")) and not overwrite:
        raise DataError(f"Run directory {run_dir} already holds a finished run (model.keras). "
                        "Pass another run directory, or overwrite=True (--overwrite).")
    os.makedirs(run_dir, exist_ok=True)
    for name in RUN_FILES + ("best.keras",):
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    return run_dir


def train(config: str | os.PathLike | Mapping[str, Any], *, run_dir: str | None = None,
          overrides: Sequence[str] = (), overwrite: bool = False, verbose: int | str = "auto") -> dict[str, Any]:
    """Trains the model of a config through the hepflow pipeline and writes a run directory.

    Args:
        config: A config YAML path or mapping (see :mod:`hepflow.training.config`).
        run_dir: Where the run goes; default ``runs/<name>``.
        overrides: ``key.sub=value`` overrides, e.g. ``["training.epochs=2"]``.
        overwrite: Replace a finished run in ``run_dir``.
        verbose: Keras ``fit`` verbosity ("auto": a progress bar, one line per epoch when
            not on a terminal).

    Returns:
        The run summary (also in ``run_dir/summary.json``): ``run_dir``, ``params``,
        ``train_seconds``, ``epochs``, ``train_jets_seen`` and the last epoch's metrics.

    Raises:
        DataError: a bad config, missing files or keys, or a finished run in ``run_dir``.
    """
    import keras

    cfg = load_config(config, overrides)
    run_dir = _run_dir(cfg, run_dir, overwrite)
    started = time.time()
    seed, tcfg = int(cfg["seed"]), cfg["training"]
    keras.utils.set_random_seed(seed)
    splits = split_specs(cfg)
    if not splits["validation"]:
        raise DataError("Training needs a validation split: set data.split.validation > 0. "
                        f"Received: split={cfg['data']['split']!r}")
    transform = build_transform(cfg)
    batch_size = int(tcfg["batch_size"])
    steps = tcfg.get("steps_per_epoch")
    cache = tcfg.get("cache")
    train_ds = make_dataset(splits["train"], batch_size=batch_size, transform=transform,
                            epoch=int(steps) if steps else "shortest", seed=seed, cache=cache)
    val_steps = tcfg.get("validation_steps")
    if val_steps:  # a class-balanced, shuffled subset: cheaper for costly models
        val_ds = make_dataset(splits["validation"], batch_size=max(batch_size, 512), transform=transform,
                              epoch=int(val_steps), seed=seed + 1)
    else:
        val_ds = make_dataset(splits["validation"], batch_size=max(batch_size, 512), transform=transform,
                              epoch="all", shuffle=0, drop_remainder=False, seed=seed, cache="memory" if cache else None)
    model = build_model(cfg)
    target = tcfg.get("target") if tcfg.get("task") == "regression" else None
    scale = float(tcfg.get("target_scale") or 1.0)
    train_ds = model_inputs(model, train_ds, target=target, target_scale=scale)
    val_ds = model_inputs(model, val_ds, target=target, target_scale=scale)
    binary = model.outputs[0].shape[-1] == 1
    if target:
        model.compile(optimizer=build_optimizer(cfg), loss="mse", metrics=["mae"])
    else:
        model.compile(optimizer=build_optimizer(cfg),
                      loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
                      metrics=["accuracy", keras.metrics.AUC(name="auc")] if binary else ["accuracy"])

    write_atomic(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(cfg, sort_keys=False))
    write_atomic(os.path.join(run_dir, "samples.yaml"), yaml.safe_dump(_samples_record(splits), sort_keys=False))
    env = {"versions": package_versions(), "git_revision": _git_revision(), "host": socket.gethostname(),
           "platform": platform.platform(), "argv": sys.argv, "cpu_count": os.cpu_count(),
           "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))}
    write_atomic(os.path.join(run_dir, "environment.json"), json.dumps(env, indent=1))

    callbacks = [keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv")),
                 keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_loss",
                                                 save_best_only=True),
                 keras.callbacks.TensorBoard(os.path.join(run_dir, "tb"), write_graph=False)]
    early = tcfg.get("early_stopping")
    if early:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True,
                                                       patience=int(early.get("patience", 3))))
    t0 = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=int(tcfg["epochs"]), callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # the pipeline shuffles
    train_seconds = time.perf_counter() - t0
    tmp = os.path.join(run_dir, f".model.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(run_dir, "model.keras"))

    epochs_run = len(history.history.get("loss", []))
    summary = {"name": cfg["name"], "run_dir": run_dir, "model": cfg["model"]["name"],
               "params": int(model.count_params()), "train_seconds": round(train_seconds, 1),
               "epochs": epochs_run, "train_jets_seen": epochs_run * len(train_ds) * batch_size,
               "last_epoch": {k: float(v[-1]) for k, v in history.history.items()},
               "best_val_loss": float(min(history.history["val_loss"])) if "val_loss" in history.history else None}
    write_atomic(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=1))
    env["end"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_atomic(os.path.join(run_dir, "environment.json"), json.dumps(env, indent=1))
    return summary
