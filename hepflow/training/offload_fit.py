"""The part of offloaded training that runs on the other machine: numpy and Keras 3 only.

This module imports neither TensorFlow nor the rest of hepflow, so a machine with Keras on
JAX or PyTorch (a GPU without TensorFlow) runs it from a copy of hepflow's checkout::

    KERAS_BACKEND=jax python -m hepflow.training.offload_fit PACK_DIR FIT_DIR [--epochs N]

(or ``hepflow offload fit``). The images travel sparse (per-channel pixel index + float16
value, zlib): a 37 × 37 four-colour jet image has about 60 non-zero entries, so 180,000 jets
take about 40 MB. float16 rounds the values to 3 significant digits in training; the run
scores full-precision images. See :mod:`hepflow.training.offload` for the whole workflow.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

__all__ = ["SPLITS", "encode_images", "dense_images", "load_images", "fit"]

SPLITS = ("train", "validation")


def _split_bytes(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The low and high bytes of 16-bit values: stored apart they compress much better."""
    b = a.view(np.uint8).reshape(-1, 2)
    return b[:, 0].copy(), b[:, 1].copy()


def _join_bytes(lo: np.ndarray, hi: np.ndarray, dtype) -> np.ndarray:
    return np.stack([lo, hi], axis=1).reshape(-1).view(dtype)


def encode_images(batches) -> dict[str, np.ndarray]:
    """Sparse arrays of ``(images, labels)`` batches: non-zeros per image, index deltas, float16 values."""
    counts, index, value, labels, shape = [], [], [], [], None
    for images, y in batches:
        shape = images.shape[1:]
        if np.prod(shape) > np.iinfo(np.uint16).max:
            raise ValueError(f"Images of shape {shape} are too large to pack with 16-bit indices. Received: {shape}")
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


def dense_images(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The dense float32 images of :func:`encode_images`'s arrays."""
    shape = tuple(int(s) for s in arrays["shape"])
    counts = arrays["counts"].astype(np.int64)
    running = np.cumsum(_join_bytes(arrays["index_lo"], arrays["index_hi"], np.uint16).astype(np.int64))
    before = np.concatenate([[0], running])[np.cumsum(counts) - counts]  # the sum up to each image
    cols = running - np.repeat(before, counts)  # each image's first delta is its absolute index
    rows = np.repeat(np.arange(len(counts)), counts)
    flat = np.zeros((len(counts), int(np.prod(shape))), np.float32)
    flat[rows, cols] = _join_bytes(arrays["value_lo"], arrays["value_hi"], np.float16).astype(np.float32)
    return flat.reshape((-1, *shape))


def load_images(run_pack: str) -> dict[str, dict[str, np.ndarray]]:
    with open(os.path.join(run_pack, "fit.json")) as f:
        key = json.load(f)["images"]
    folder = os.path.join(os.path.dirname(os.path.abspath(run_pack)), "images", key)
    return {s: dict(np.load(os.path.join(folder, f"{s}.npz"))) for s in SPLITS}


def fit(pack_dir: str, out: str, *, epochs: int | None = None, max_minutes: float | None = None) -> None:
    """Trains ``pack_dir/model.keras`` on the packed images; writes the model, history and a record to ``out``.

    Args:
        pack_dir: Written by :func:`pack`.
        out: Where ``model.keras``, ``history.csv``, ``check_scores.npy`` and ``fit_record.json`` go.
        epochs: Overrides the config's epochs.
        max_minutes: Stop after the first epoch that ends past this wall time (a machine lent
            for a limited time); the record says so.
    """
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
    data = load_images(pack_dir)
    x = {s: dense_images(data[s]) for s in SPLITS}
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
              "batch_size": fcfg["batch_size"], "train_jets": len(y["train"]), "stopped_by_time_limit": limit.hit,
              "device": _device_name(),
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


def main(argv: list[str] | None = None) -> None:
    """``python -m hepflow.training.offload_fit PACK_DIR FIT_DIR [--epochs N] [--max-minutes M]``."""
    parser = argparse.ArgumentParser(description="Train a packed hepflow image model with Keras alone.")
    parser.add_argument("pack_dir")
    parser.add_argument("fit_dir")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that ends past this wall time")
    args = parser.parse_args(argv)
    fit(args.pack_dir, args.fit_dir, epochs=args.epochs, max_minutes=args.max_minutes)


if __name__ == "__main__":
    sys.exit(main())
