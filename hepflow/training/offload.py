"""Training a jet-image tagger of a hepflow config on another machine, e.g. a GPU without TensorFlow.

The images come from hepflow's own pipeline (the config's samples, split and transform), here;
the other machine needs only numpy and Keras 3 with any backend (JAX, PyTorch or TensorFlow) and
runs :mod:`hepflow.training.offload_fit`; the result is a hepflow run directory that
``hepflow evaluate`` and ``hepflow export`` read::

    # here: the config's train and validation images, the untrained model and the optimizer
    hepflow offload pack CONFIG PACK_DIR [--set KEY=VALUE ...]
    # there (KERAS_BACKEND picks the backend; no TensorFlow needed)
    KERAS_BACKEND=jax python -m hepflow.training.offload_fit PACK_DIR/<name> FIT_DIR [--epochs N]
    # here: a run directory (the model reloaded with TensorFlow and checked against FIT_DIR)
    hepflow offload unpack PACK_DIR/<name> FIT_DIR RUN_DIR

Training follows the config: its optimizer (learning-rate schedule included), epochs, batch size
and ``early_stopping`` (the best epoch's weights are kept, as ``hepflow train`` does), with the
rows shuffled each epoch.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import yaml

from hepflow.data import make_dataset
from hepflow.errors import ConfigError, RunError
from hepflow.io import atomic_path, write_atomic
from hepflow.runs import (build_model, build_optimizer, build_transform, check_new_run, load_config, samples_record,
                          split_specs)
from hepflow.training.offload_fit import SPLITS, dense_images, encode_images, load_images

__all__ = ["pack", "unpack"]


def _images_key(cfg) -> str:
    """Configs with the same data and transform share one packed copy of the images."""
    spec = json.dumps({"data": cfg["data"], "transform": cfg["transform"]}, sort_keys=True, default=str)
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def pack(config: str, out: str, *, overrides: Sequence[str] = (), batch_size: int = 1024) -> None:
    """Packs a config into ``out``: ``images/<key>/<split>.npz``, shared by the configs with the same
    data and transform, and ``<name>/`` with ``model.keras`` (untrained), ``fit.json``,
    ``config.yaml`` and ``samples.yaml``.

    Args:
        config: A hepflow training config of an image model.
        out: The pack folder (several configs may go into one).
        overrides: ``key=value`` overrides as ``hepflow train --set`` takes them (e.g. another seed and name).
        batch_size: Rows per pipeline batch while packing.
    """
    cfg = load_config(config, overrides)
    keras.utils.set_random_seed(int(cfg["seed"]))
    model = build_model(cfg)
    if [t.name for t in model.inputs] != ["image"]:
        raise ConfigError(f"pack takes image models (one input named 'image'). Received: inputs "
                          f"{[t.name for t in model.inputs]} of model {cfg['model']['name']!r} in {config}")
    splits = split_specs(cfg)
    key = _images_key(cfg)
    folder = os.path.join(out, "images", key)
    os.makedirs(folder, exist_ok=True)
    for split in SPLITS:
        path = os.path.join(folder, f"{split}.npz")
        if os.path.exists(path):
            continue
        ds = make_dataset(splits[split], batch_size=batch_size, transform=build_transform(cfg), epoch="all",
                          shuffle=0, drop_remainder=False, seed=int(cfg["seed"]))
        arrays = encode_images((x["image"].numpy(), y.numpy()) for x, y in ds)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        print(f"{key}/{split}: {len(arrays['label'])} jets, {arrays['counts'].mean():.1f} non-zero entries "
              f"per image, {os.path.getsize(path) / 1e6:.1f} MB", flush=True)
    run_pack = os.path.join(out, cfg["name"])
    os.makedirs(run_pack, exist_ok=True)
    with atomic_path(os.path.join(run_pack, "model.keras"), suffix=".keras") as tmp:
        model.save(tmp)
    tcfg = cfg["training"]
    stop = tcfg.get("early_stopping") or None
    fit_cfg = {"images": key, "optimizer": keras.optimizers.serialize(build_optimizer(cfg)),
               "epochs": int(tcfg["epochs"]), "batch_size": int(tcfg["batch_size"]), "seed": int(cfg["seed"]),
               "early_stopping": None if stop is None else {"monitor": stop.get("monitor", "val_loss"),
                                                            "patience": int(stop.get("patience", 3))}}
    write_atomic(os.path.join(run_pack, "fit.json"), json.dumps(fit_cfg, indent=1))
    write_atomic(os.path.join(run_pack, "config.yaml"), yaml.safe_dump(cfg, sort_keys=False))
    write_atomic(os.path.join(run_pack, "samples.yaml"), yaml.safe_dump(samples_record(splits), sort_keys=False))
    print(f"{run_pack}: model {cfg['model']['name']}, images {key}", flush=True)


def unpack(pack_dir: str, fit_dir: str, run_dir: str) -> None:
    """Writes a hepflow run directory from a pack and a fit, after checking the model reloads here."""
    check_new_run(run_dir, overwrite=False)
    model = keras.saving.load_model(os.path.join(fit_dir, "model.keras"))
    check = dense_images(load_images(pack_dir)["validation"])[:512]
    scores = np.asarray(model.predict({"image": check}, verbose=0))
    there = np.load(os.path.join(fit_dir, "check_scores.npy"))
    # GPUs run float32 convolutions in TF32 by default (about 3 significant digits)
    difference = float(np.abs(scores - there).max())
    print(f"largest score difference between the two machines on 512 validation jets: {difference:.2g}")
    if difference > 1e-3:
        raise RunError(f"The reloaded model scores differently here (largest difference {difference:.2g}, "
                       "more than 1e-3); the run is not written. Received: a model that does not reload faithfully")
    with open(os.path.join(fit_dir, "fit_record.json")) as f:
        record = json.load(f)
    with open(os.path.join(pack_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    with open(os.path.join(fit_dir, "history.csv")) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    os.makedirs(run_dir, exist_ok=True)
    for name in ("config.yaml", "samples.yaml"):
        shutil.copy(os.path.join(pack_dir, name), os.path.join(run_dir, name))
    shutil.copy(os.path.join(fit_dir, "history.csv"), os.path.join(run_dir, "history.csv"))
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb", "train"))
    with writer.as_default():
        for row in rows:
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.scalar(f"epoch_{key}", value, step=int(row["epoch"]))
    writer.close()
    monitor = "val_loss"
    summary = {"name": cfg["name"], "run_dir": run_dir, "model": cfg["model"]["name"],
               "params": int(model.count_params()), "train_seconds": record["train_seconds"],
               "epochs": record["epochs"], "train_jets_seen": record["epochs"] * record["steps_per_epoch"]
               * record["batch_size"], "strategy": f"offloaded ({record['backend']} on {record['device']})",
               "replicas": 1, "last_epoch": {k: v for k, v in rows[-1].items() if k != "epoch"},
               "best_val_loss": min((r[monitor] for r in rows if monitor in r), default=None)}
    write_atomic(os.path.join(run_dir, "environment.json"), json.dumps({"offloaded_fit": record}, indent=1))
    write_atomic(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=1))
    with atomic_path(os.path.join(run_dir, "model.keras"), suffix=".keras") as tmp:
        shutil.copy(os.path.join(fit_dir, "model.keras"), tmp)
    print(json.dumps(summary))


