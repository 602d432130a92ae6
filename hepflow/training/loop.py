"""hepflow's training loop: ``fit`` for one device, mirrored GPUs and multi-worker clusters alike.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585:
"Attempt to convert a value (PerReplica...) to a Tensor"), so hepflow runs one loop of its own
for every strategy rather than two code paths. Each step calls the model's own ``train_step``
through ``strategy.run`` (so models with a custom ``train_step`` — VAEs, GANs — train here as
they do in ``fit``); gradients are all-reduced by the Keras optimizer inside the strategy, and
Keras' losses divide by the number of replicas, so the update equals one device's on the
global batch.

The loop keeps what users rely on in ``fit``: Keras callbacks (``ModelCheckpoint``,
``CSVLogger``, ``TensorBoard``, ``EarlyStopping``, ...) with the same ``logs``, a progress bar,
``History``, validation after every epoch (``val_`` metrics), and the learning rate in the logs.
It adds backups for kill-and-resume: with ``backup_dir`` it saves model, optimizer, random-seed
states and the (epoch, step) position at the end of every epoch (and every ``backup_steps``
steps, and when SIGINT or SIGTERM arrives), and a new ``fit`` with the same ``backup_dir``
continues from the last backup: it recreates the epoch's data iterator and skips the batches
already trained on, so a resumed seeded run ends where an uninterrupted one does.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hepflow.data import DataError
from hepflow.io import write_atomic

__all__ = ["fit", "latest_backup", "Backup"]

_BACKUP_STATE = "position.json"


class Backup:
    """Model + optimizer + seed-generator states and the loop's position, in ``directory``.

    Written with ``tf.train.Checkpoint`` (atomic per save; the last two are kept) plus a small
    ``position.json`` (written by rename) that names the checkpoint and the (epoch, step) after
    which it was taken. Only the chief writes; the other workers write to a scratch folder.
    """

    def __init__(self, model: keras.Model, directory: str, *, write: bool = True) -> None:
        self.directory = directory
        self.write = write
        # model.variables includes the seed generators' states (dropout masks resume exactly)
        objects = {"model": list(model.variables), "metrics": list(model.metrics_variables)}
        # the compiled optimizer and any others the model keeps (a GAN's two)
        optimizers = [model.optimizer] + [v for k, v in sorted(vars(model).items())
                                          if isinstance(v, keras.optimizers.Optimizer) and v is not model.optimizer]
        for i, opt in enumerate(o for o in optimizers if o is not None):
            objects[f"optimizer_{i}" if i else "optimizer"] = list(opt.variables)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)

    def save(self, epoch: int, step: int, logs: dict[str, float] | None = None) -> None:
        """Saves the state after ``step`` batches of ``epoch`` (0-based); ``logs`` when the epoch is complete."""
        path = self.manager.save()
        if not self.write:
            return

        write_atomic(os.path.join(self.directory, _BACKUP_STATE),
                     json.dumps({"checkpoint": os.path.basename(path), "epoch": epoch, "step": step,
                                 "completed_epochs": epoch + 1 if logs is not None else epoch, "logs": logs or {}}))

    def restore(self) -> tuple[int, int, dict]:
        """Restores the last backup; returns ``(epoch, step, logs)`` of it, or ``(0, 0, {})``."""
        pos = latest_backup(self.directory)
        if pos is None:
            return 0, 0, {}
        self.checkpoint.restore(os.path.join(self.directory, pos["checkpoint"])).assert_existing_objects_matched()
        return int(pos["epoch"]), int(pos["step"]), dict(pos.get("logs", {}))


def latest_backup(directory: str) -> dict[str, Any] | None:
    """The position record of the last backup in ``directory``, or ``None``."""
    path = os.path.join(directory, _BACKUP_STATE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _distribute(strategy: tf.distribute.Strategy, data, *, name: str):
    """A distributed dataset and its steps per epoch, from a dataset of global batches or a per-worker function.

    Raises:
        DataError: ``data`` is neither, or has no known, positive number of batches.
    """
    dist, steps, spec = _distribute_any(strategy, data, name=name)
    if steps < 1:
        raise DataError(f"{name} must have a known, positive number of batches. Received: {steps}")
    return dist, steps, spec


def _distribute_any(strategy: tf.distribute.Strategy, data, *, name: str):
    if isinstance(data, tf.data.Dataset):
        options = tf.data.Options()
        # Several workers reading one dataset of global batches: each keeps every n-th batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = data.with_options(options)
        steps = int(data.cardinality())
        return strategy.experimental_distribute_dataset(data), steps, data.element_spec
    if callable(data):
        made: dict[str, Any] = {}

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            ds = data(context)
            made["steps"], made["spec"] = int(ds.cardinality()), ds.element_spec
            return ds

        dist = strategy.distribute_datasets_from_function(dataset_fn)
        return dist, made["steps"], made["spec"]
    raise DataError(f"{name} must be a tf.data.Dataset or a function of a tf.distribute.InputContext. "
                    f"Received: {type(data).__name__}")


def _scalar_logs(logs) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in logs.items()}


def _learning_rate(model: keras.Model) -> float | None:
    opt = model.optimizer
    if opt is None or not hasattr(opt, "learning_rate"):
        return None
    return float(np.asarray(opt.learning_rate))


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after every step (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def fit(model: keras.Model, train_data: tf.data.Dataset | Callable[[tf.distribute.InputContext], tf.data.Dataset],
        *, epochs: int, validation_data=None, callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int | str = "auto", backup_dir: str | None = None, backup_steps: int | None = None,
        write_backups: bool = True) -> keras.callbacks.History:
    """Trains ``model`` (compiled, created in its strategy's scope) on ``train_data``.

    Args:
        model: A compiled Keras model; its strategy is the one in whose scope it was created
            (``model.distribute_strategy``).
        train_data: A dataset of global batches (split between replicas; with several workers
            each keeps every n-th batch), or ``fn(input_context) -> dataset`` returning each
            worker's own share in per-replica batches (e.g. ``make_dataset(...,
            shard=(context.input_pipeline_id, context.num_input_pipelines))``). Every epoch
            iterates it once; all workers must yield the same number of batches.
        epochs: Number of epochs.
        validation_data: Like ``train_data``; evaluated after every epoch into ``val_*`` logs.
        callbacks: Keras callbacks; a progress bar and ``History`` are added.
        verbose: 0 (silent), 1 or ``"auto"`` (progress bar), 2 (one line per epoch).
        backup_dir: Where backups go; when it holds one, training resumes from it.
        backup_steps: Also back up every this many steps (default: at epoch ends only).
        write_backups: ``False`` on non-chief workers (their backups are scratch copies).

    Returns:
        The ``History`` (``history.history``: per-epoch logs, resumed epochs included from
        the position where training restarted).

    Raises:
        DataError: bad data or a dataset without a known length.
    """
    strategy = model.distribute_strategy
    if epochs < 1:
        raise DataError(f"epochs must be ≥ 1. Received: epochs={epochs}")
    with strategy.scope():
        train_dist, steps, spec = _distribute(strategy, train_data, name="train_data")
        val_dist, val_steps = (None, None) if validation_data is None else \
            _distribute(strategy, validation_data, name="validation_data")[:2]
        model._symbolic_build(data_batch=spec)  # metrics, loss and optimizer variables, in the scope
        backup = Backup(model, backup_dir, write=write_backups) if backup_dir else None
    start_epoch, start_step, _ = backup.restore() if backup else (0, 0, {})
    if start_step >= steps:
        start_epoch, start_step = start_epoch + 1, 0

    # Keras' step code branches in Python, so trace it as it is written (no AutoGraph).
    @tf.function(autograph=False)
    def train_function(iterator):
        return strategy.run(model.train_step, args=(next(iterator),))

    @tf.function(autograph=False)
    def test_function(iterator):
        return strategy.run(model.test_step, args=(next(iterator),))

    metrics_result = model.get_metrics_result
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Eager reads of the workers' metric variables run one collective each, every one negotiated
        # afresh (seconds per epoch on loopback); in a function they are set up once and reused.
        metrics_result = tf.function(model.get_metrics_result, autograph=False)

    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        verbose=1 if verbose == "auto" else verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    # The pipelines draw a new shuffle for each iterator they make: replay the skipped epochs'.
    for _ in range(start_epoch):
        iter(train_dist)
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    with _StopSignal() as stop:
        for epoch in range(start_epoch, epochs):
            first = start_step if epoch == start_epoch else 0
            if first == 0:  # a resumed epoch keeps the metric sums restored from the backup
                for metric in model.metrics:
                    metric.reset_state()
            callback_list.on_epoch_begin(epoch)
            _train_steps(train_function, iter(train_dist), epoch=epoch, first=first, steps=steps,
                         callback_list=callback_list, strategy=strategy, stop=stop, backup=backup,
                         backup_steps=backup_steps)
            logs = _scalar_logs(metrics_result())
            lr = _learning_rate(model)
            if val_dist is not None:
                logs.update(_validate(model, test_function, iter(val_dist), val_steps, metrics_result))
            if lr is not None:
                logs["learning_rate"] = lr
            callback_list.on_epoch_end(epoch, logs)
            if backup:
                backup.save(epoch, steps, logs)
            if model.stop_training:
                break
    callback_list.on_train_end(logs)
    return model.history


def _train_steps(train_function, iterator, *, epoch: int, first: int, steps: int, callback_list, strategy, stop,
                 backup: Backup | None, backup_steps: int | None) -> None:
    """Steps ``first`` … ``steps − 1`` of one epoch; backs up every ``backup_steps`` and on a stop signal.

    Raises:
        KeyboardInterrupt: a stop signal arrived (after the state was saved when backing up).
    """
    for _ in range(first):  # batches trained on before the interruption
        next(iterator)
    for step in range(first, steps):
        callback_list.on_train_batch_begin(step)
        out = train_function(iterator)
        callback_list.on_train_batch_end(step, strategy.experimental_local_results(out)[0])
        due = backup_steps and (step + 1) % backup_steps == 0 and step + 1 < steps
        if stop.received is not None or due:
            if backup:
                backup.save(epoch, step + 1)
            if stop.received is not None:
                raise KeyboardInterrupt(f"signal {stop.received}: state saved at epoch {epoch}, "
                                        f"step {step + 1}" if backup else f"signal {stop.received}")


def _validate(model: keras.Model, test_function, iterator, steps: int, metrics_result) -> dict[str, float]:
    """The ``val_*`` logs of one pass over the validation batches (the metrics are reset first)."""
    for metric in model.metrics:
        metric.reset_state()
    for _ in range(steps):
        test_function(iterator)
    return {f"val_{k}": v for k, v in _scalar_logs(metrics_result()).items()}
