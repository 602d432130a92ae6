"""Trains a jet-image tagger of a hepflow config on another machine, e.g. a GPU without TensorFlow.

The images come from hepflow's own pipeline (the config's samples, split and transform), here;
the other machine needs only numpy and Keras 3 with any backend (JAX, PyTorch or TensorFlow);
the result is a hepflow run directory that ``hepflow evaluate`` and ``hepflow export`` read.

    # here: the config's train and validation images, the untrained model and the optimizer
    .venv/bin/python tools/offload_images.py pack CONFIG PACK_DIR
    # there (KERAS_BACKEND picks the backend)
    KERAS_BACKEND=jax python3 tools/offload_images.py fit PACK_DIR FIT_DIR [--epochs N]
    # here: a run directory (the model reloaded with TensorFlow and checked against FIT_DIR)
    .venv/bin/python tools/offload_images.py unpack PACK_DIR FIT_DIR RUN_DIR

The images travel sparse (per-channel pixel index + float16 value, zlib): a 37 × 37 four-colour
jet image has about 60 non-zero entries, so 180,000 jets take about 40 MB. float16 rounds the
values to 3 significant digits in training; the run scores full-precision images.

Training follows the config: its optimizer (learning-rate schedule included), epochs, batch size
and ``early_stopping`` (the best epoch's weights are kept, as ``hepflow train`` does), with the
rows shuffled each epoch.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

SPLITS = ("train", "validation")


def _split_bytes(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The low and high bytes of 16-bit values: stored apart they compress much better."""
    b = a.view(np.uint8).reshape(-1, 2)
    return b[:, 0].copy(), b[:, 1].copy()


def _join_bytes(lo: np.ndarray, hi: np.ndarray, dtype) -> np.ndarray:
    return np.stack([lo, hi], axis=1).reshape(-1).view(dtype)


def _encode(batches) -> dict[str, np.ndarray]:
    """Sparse arrays of ``(images, labels)`` batches: non-zeros per image, index deltas, float16 values."""
    counts, index, value, labels, shape = [], [], [], [], None
    for images, y in batches:
        shape = images.shape[1:]
        if np.prod(shape) > np.iinfo(np.uint16).max:
            raise SystemExit(f"Images of shape {shape} are too large to pack with 16-bit indices.")
        flat = images.reshape(len(images), -1)
        rows, cols = np.nonzero(flat)
        n = np.bincount(rows, minlength=len(flat))
        delta = np.diff(cols, prepend=0)
        first = np.cumsum(n) - n
        delta[first[n > 0]] = cols[first[n > 0]]  # each image's first index is absolute
        counts.append(n.astype(np.uint16))
        index.append(delta.astype(np.uint16))
        value.append(flat[rows, cols].astype(np.float16))
        labels.append(np.asarray(y).astype(np.uint8))
    index_lo, index_hi = _split_bytes(np.concatenate(index))
    value_lo, value_hi = _split_bytes(np.concatenate(value))
    return {"counts": np.concatenate(counts), "index_lo": index_lo, "index_hi": index_hi, "value_lo": value_lo,
            "value_hi": value_hi, "label": np.concatenate(labels), "shape": np.asarray(shape, np.int64)}


def _dense(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The dense float32 images of :func:`_encode`'s arrays."""
    shape = tuple(int(s) for s in arrays["shape"])
    counts = arrays["counts"].astype(np.int64)
    running = np.cumsum(_join_bytes(arrays["index_lo"], arrays["index_hi"], np.uint16).astype(np.int64))
    before = np.concatenate([[0], running])[np.cumsum(counts) - counts]  # the sum up to each image
    cols = running - np.repeat(before, counts)  # each image's first delta is its absolute index
    rows = np.repeat(np.arange(len(counts)), counts)
    flat = np.zeros((len(counts), int(np.prod(shape))), np.float32)
    flat[rows, cols] = _join_bytes(arrays["value_lo"], arrays["value_hi"], np.float16).astype(np.float32)
    return flat.reshape((-1, *shape))


def _images_key(cfg) -> str:
    """Configs with the same data and transform share one packed copy of the images."""
    spec = json.dumps({"data": cfg["data"], "transform": cfg["transform"]}, sort_keys=True, default=str)
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def _load_images(run_pack: str) -> dict[str, dict[str, np.ndarray]]:
    with open(os.path.join(run_pack, "fit.json")) as f:
        key = json.load(f)["images"]
    folder = os.path.join(os.path.dirname(os.path.abspath(run_pack)), "images", key)
    return {s: dict(np.load(os.path.join(folder, f"{s}.npz"))) for s in SPLITS}


def pack(config: str, out: str, *, overrides: list[str] = (), batch_size: int = 1024) -> None:
    """Packs a config into ``out``: ``images/<key>/<split>.npz``, shared by the configs with the same
    data and transform, and ``<name>/`` with ``model.keras`` (untrained), ``fit.json``,
    ``config.yaml`` and ``samples.yaml``.

    Args:
        config: A hepflow training config of an image model.
        out: The pack folder (several configs may go into one).
        overrides: ``key=value`` overrides as ``hepflow train --set`` takes them (e.g. another seed and name).
        batch_size: Rows per pipeline batch while packing.
    """
    import keras
    import yaml

    from hepflow.data.pipeline import make_dataset
    from hepflow.io import write_atomic
    from hepflow.runs import build_model, build_optimizer, build_transform, load_config, split_specs
    from hepflow.runs import samples_record

    cfg = load_config(config, overrides)
    keras.utils.set_random_seed(int(cfg["seed"]))
    model = build_model(cfg)
    if [t.name for t in model.inputs] != ["image"]:
        raise SystemExit(f"pack takes image models (one input named 'image'). Received: inputs "
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
        arrays = _encode((x["image"].numpy(), y.numpy()) for x, y in ds)
        tmp = os.path.join(folder, f".{split}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        print(f"{key}/{split}: {len(arrays['label'])} jets, {arrays['counts'].mean():.1f} non-zero entries "
              f"per image, {os.path.getsize(path) / 1e6:.1f} MB", flush=True)
    run_pack = os.path.join(out, cfg["name"])
    os.makedirs(run_pack, exist_ok=True)
    model.save(os.path.join(run_pack, "model.keras"))
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


def fit(pack_dir: str, out: str, *, epochs: int | None = None, max_minutes: float | None = None) -> None:
    """Trains ``pack_dir/model.keras`` on the packed images; writes the model, history and a record to ``out``.

    Args:
        pack_dir: Written by :func:`pack`.
        out: Where ``model.keras``, ``history.csv``, ``check_scores.npy`` and ``fit_record.json`` go.
        epochs: Overrides the config's epochs.
        max_minutes: Stop after the first epoch that ends past this wall time (a machine lent
            for a limited time); the record says so.
    """
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def __init__(self, seconds: float) -> None:
            super().__init__()
            self.seconds, self.start, self.hit = seconds, time.perf_counter(), False

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            if time.perf_counter() - self.start > self.seconds:
                self.model.stop_training = self.hit = True

    with open(os.path.join(pack_dir, "fit.json")) as f:
        fcfg = json.load(f)
    keras.utils.set_random_seed(fcfg["seed"])
    data = _load_images(pack_dir)
    x = {s: _dense(data[s]) for s in SPLITS}
    y = {s: data[s]["label"].astype(np.float32) for s in SPLITS}
    model = keras.saving.load_model(os.path.join(pack_dir, "model.keras"))
    model.compile(optimizer=keras.optimizers.deserialize(fcfg["optimizer"]), loss="binary_crossentropy",
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])
    os.makedirs(out, exist_ok=True)
    callbacks = [keras.callbacks.CSVLogger(os.path.join(out, "history.csv"))]
    stop = fcfg["early_stopping"]
    if stop:
        mode = "max" if stop["monitor"].removeprefix("val_") in ("auc", "accuracy") else "min"
        callbacks.append(keras.callbacks.EarlyStopping(monitor=stop["monitor"], patience=stop["patience"], mode=mode,
                                                       restore_best_weights=True))
    limit = TimeLimit(60 * max_minutes if max_minutes else float("inf"))
    callbacks.append(limit)
    t0 = time.perf_counter()
    history = model.fit({"image": x["train"]}, y["train"], batch_size=fcfg["batch_size"],
                        epochs=epochs or fcfg["epochs"], validation_data=({"image": x["validation"]}, y["validation"]),
                        validation_batch_size=max(fcfg["batch_size"], 512), shuffle=True, callbacks=callbacks,
                        verbose=2)
    seconds = time.perf_counter() - t0
    trained = keras.saving.load_model(os.path.join(pack_dir, "model.keras"))  # without the optimizer's state
    trained.set_weights(model.get_weights())
    trained.save(os.path.join(out, "model.keras"))
    check = x["validation"][:512]
    np.save(os.path.join(out, "check_scores.npy"), np.asarray(model.predict({"image": check}, verbose=0)))
    record = {"backend": keras.backend.backend(), "keras": keras.__version__, "train_seconds": round(seconds, 1),
              "epochs": len(history.history["loss"]), "steps_per_epoch": int(history.params["steps"]),
              "batch_size": fcfg["batch_size"], "train_jets": len(y["train"]), "stopped_by_time_limit": limit.hit, "device": _device_name(),
              "cpu_count": os.cpu_count(), "host": os.uname().nodename}
    with open(os.path.join(out, "fit_record.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record), flush=True)


def _device_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.strip() or "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def unpack(pack_dir: str, fit_dir: str, run_dir: str) -> None:
    """Writes a hepflow run directory from a pack and a fit, after checking the model reloads here."""
    import csv

    import keras
    import tensorflow as tf
    import yaml

    from hepflow.io import write_atomic

    if os.path.exists(os.path.join(run_dir, "model.keras")):
        raise SystemExit(f"{run_dir} already holds a finished run; remove it first.")
    model = keras.saving.load_model(os.path.join(fit_dir, "model.keras"))
    check = _dense(_load_images(pack_dir)["validation"])[:512]
    scores = np.asarray(model.predict({"image": check}, verbose=0))
    there = np.load(os.path.join(fit_dir, "check_scores.npy"))
    # GPUs run float32 convolutions in TF32 by default (about 3 significant digits)
    difference = float(np.abs(scores - there).max())
    print(f"largest score difference between the two machines on 512 validation jets: {difference:.2g}")
    if difference > 1e-3:
        raise SystemExit(f"The reloaded model scores differently here (largest difference {difference:.2g}, "
                         "more than 1e-3); the run is not written.")
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
    tmp = os.path.join(run_dir, ".model.tmp.keras")
    shutil.copy(os.path.join(fit_dir, "model.keras"), tmp)
    os.replace(tmp, os.path.join(run_dir, "model.keras"))
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="images, model and optimizer of a config, through hepflow's pipeline")
    p.add_argument("config")
    p.add_argument("pack_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. seed=6 (repeatable)")
    f = sub.add_parser("fit", help="train on a pack (numpy + Keras only)")
    f.add_argument("pack_dir")
    f.add_argument("fit_dir")
    f.add_argument("--epochs", type=int, help="override the config's epochs")
    f.add_argument("--max-minutes", type=float, help="stop after the epoch that ends past this wall time")
    u = sub.add_parser("unpack", help="a hepflow run directory from a pack and a fit")
    u.add_argument("pack_dir")
    u.add_argument("fit_dir")
    u.add_argument("run_dir")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.config, args.pack_dir, overrides=args.overrides)
    elif args.command == "fit":
        fit(args.pack_dir, args.fit_dir, epochs=args.epochs, max_minutes=args.max_minutes)
    else:
        unpack(args.pack_dir, args.fit_dir, args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
