"""``train``: one config in, one run directory out.

The run directory holds everything needed to inspect, evaluate or reproduce the run::

    config.yaml        the resolved config (defaults and overrides applied)
    samples.yaml       the train/validation/test files of every sample, with sizes and mtimes
    environment.json   package versions, git revision, host, start and end time
    history.csv        loss and metrics per epoch
    best.keras         the model of the best epoch so far (``training.early_stopping.monitor``,
                       default val_loss; a GAN keeps one only with early stopping)
    model.keras        the final model (the best epoch's weights with early stopping)
    summary.json       parameters, training time, jets seen, final metrics
    backup/            the last state (model, optimizer, seeds, position) for ``resume``
    validation/        with the standard reporters, classifiers: the final model's ROC curve on the
                       validation files (roc.png)
    tb/                TensorBoard logs: metrics and learning rate per epoch, the run's hparams (and what
                       the reporters log: the validation ROC, shower monitors of generators)

Training runs through :func:`hepflow.training.loop.fit` under the strategy of
``training.strategy`` (:mod:`hepflow.training.distribute`). With several workers every
worker runs ``train`` with the same config; each reads its own shard of every epoch, and only
the chief writes the run directory.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
import yaml
from tensorboard.plugins.hparams import api as hp

from hepflow.data import make_dataset
from hepflow.errors import ConfigError, RunError
from hepflow.io import atomic_path, write_atomic
from hepflow.models.base import OwnStepModel
from hepflow.runs import (build_model, build_optimizer, build_transform, check_new_run, clear_run, git_revision,
                          load_config, model_inputs, package_versions, read_history, run_state, samples_record,
                          split_specs)
from hepflow.runs.reporting import Reporter, RunContext
from hepflow.training.best_epoch import best_epoch_callbacks
from hepflow.training.distribute import is_chief, make_strategy, strategy_name, tf_config_workers
from hepflow.training.loop import fit, latest_backup

__all__ = ["train"]


def _resume_config(run_dir: str | None, overrides: Sequence[str]) -> dict[str, Any]:
    if not run_dir or not os.path.exists(os.path.join(run_dir, "config.yaml")):
        raise RunError(f"resume needs the directory of a started run (with config.yaml). Received: run_dir={run_dir!r}")
    if run_state(run_dir) == "finished":
        raise RunError(f"Run {run_dir} has finished (model.keras exists); there is nothing to resume. "
                       f"Received: run_dir={run_dir!r}")
    return load_config(os.path.join(run_dir, "config.yaml"), overrides)


def _datasets(cfg: Mapping[str, Any], splits, transform, model, workers: int):
    """The training and validation data: global batches, or per-worker shards with several workers."""
    seed, tcfg = int(cfg["seed"]), cfg["training"]
    batch_size, steps, val_steps = int(tcfg["batch_size"]), tcfg.get("steps_per_epoch"), tcfg.get("validation_steps")
    target = tcfg.get("target") if tcfg.get("task") in ("regression", "segmentation") else None
    scale = float(tcfg.get("target_scale") or 1.0)
    per_pixel = tcfg.get("task") == "segmentation"
    cache = tcfg.get("cache")
    mix = cfg["data"].get("mix", "exact")
    service = tcfg.get("service")

    def train_ds(batch: int, shard=None):
        if service:  # the service's workers read and transform; each chunk once per epoch
            return model_inputs(model, make_dataset(
                splits["train"], batch_size=batch, transform=transform, epoch=int(steps) if steps else "shortest",
                seed=seed, service=service, service_compression=tcfg.get("service_compression"), mix=mix),
                target=target, target_scale=scale, per_pixel=per_pixel)
        return model_inputs(model, make_dataset(
            splits["train"], batch_size=batch, transform=transform, epoch=int(steps) * workers if steps else "shortest",
            seed=seed, cache=cache, shard=shard, mix=mix), target=target, target_scale=scale, per_pixel=per_pixel)

    def val_ds(batch: int, shard=None):
        if val_steps:  # a class-balanced, shuffled subset: cheaper for costly models
            ds = make_dataset(splits["validation"], batch_size=batch, transform=transform,
                              epoch=int(val_steps) * workers, seed=seed + 1, shard=shard, mix=mix)
        else:
            ds = make_dataset(splits["validation"], batch_size=batch, transform=transform, epoch="all", shuffle=0,
                              drop_remainder=False, seed=seed, cache="memory" if cache else None, shard=shard)
        return model_inputs(model, ds, target=target, target_scale=scale, per_pixel=per_pixel)

    val_batch = batch_size if per_pixel else max(batch_size, 512)  # per-pixel outputs are large
    if workers == 1:
        return train_ds(batch_size), val_ds(val_batch)
    if service:
        raise ConfigError("training.service with several training workers is not supported: the service already "
                          f"shares the preprocessing out. Received: service={service!r}, workers={workers}")

    def shard(ctx):
        return ctx.input_pipeline_id, ctx.num_input_pipelines

    return (lambda ctx: train_ds(ctx.get_per_replica_batch_size(batch_size), shard(ctx)),
            lambda ctx: val_ds(ctx.get_per_replica_batch_size(val_batch), shard(ctx)))


def _log_hparams(log_dir: str, cfg: Mapping[str, Any]) -> None:
    """The run's hyperparameters for TensorBoard's HParams dashboard."""
    flat = {"model": cfg["model"]["name"], "seed": int(cfg["seed"])}
    for section in ("training", "optimizer"):
        for k, v in cfg[section].items():
            if isinstance(v, (bool, int, float, str)):
                flat[f"{section}.{k}"] = v
    for k, v in (cfg["model"].get("args") or {}).items():
        if isinstance(v, (bool, int, float, str)):
            flat[f"model.args.{k}"] = v
    with tf.summary.create_file_writer(os.path.join(log_dir, "train")).as_default():
        hp.hparams(flat, trial_id=cfg["name"])


def train(config: str | os.PathLike | Mapping[str, Any] | None = None, *, run_dir: str | None = None,
          overrides: Sequence[str] = (), overwrite: bool = False, resume: bool = False,
          strategy: str | tf.distribute.Strategy | None = None, verbose: int | str = "auto",
          reporters: Sequence[Reporter] = ()) -> dict[str, Any]:
    """Trains the model of a config through the hepflow pipeline and writes a run directory.

    Args:
        config: A config YAML path or mapping (see :mod:`hepflow.runs.config`); with
            ``resume`` the run's own ``config.yaml`` is used and this may be ``None``.
        run_dir: Where the run goes; default ``runs/<name>``.
        overrides: ``key.sub=value`` overrides, e.g. ``["training.epochs=2"]``.
        overwrite: Replace a run in ``run_dir`` (finished, interrupted or started): only the
            entries hepflow writes there (:data:`hepflow.runs.RUN_ENTRIES`) are removed,
            and only once the config, the data and the model have been checked. Without it, a
            ``run_dir`` that holds a run is refused (an interrupted one points to ``resume``).
        resume: Continue the unfinished run in ``run_dir`` from its last backup (after a crash,
            ``kill -9``, or SIGINT/SIGTERM, which save a backup before stopping).
        strategy: Overrides ``training.strategy``: a name or a ``tf.distribute.Strategy``.
        verbose: Progress: ``"auto"``/1 a progress bar, 2 one line per epoch, 0 nothing.
        reporters: Reports the caller wants made during and after training
            (:class:`hepflow.runs.reporting.Reporter`), e.g. the validation ROC curve and
            the shower monitor of :func:`hepflow.evaluation.reporters.standard_reporters`,
            which ``hepflow train`` hands in. Training itself knows no report.

    Returns:
        The run summary (also in ``run_dir/summary.json``): ``run_dir``, ``params``,
        ``train_seconds``, ``epochs``, ``train_jets_seen`` and the last epoch's metrics.

    Raises:
        ConfigError: a bad config.
        DataError: missing files or keys, bad shapes.
        RunError: a run in ``run_dir`` without ``overwrite``, or nothing to resume.
        KeyboardInterrupt: SIGINT/SIGTERM arrived; the state was saved for ``resume``.
    """
    cfg = _resume_config(run_dir, overrides) if resume else load_config(config, overrides)
    tcfg = cfg["training"]
    # First TensorFlow work of the process: MultiWorkerMirroredStrategy must come before any other.
    strategy = make_strategy(strategy if strategy is not None else tcfg["strategy"])
    workers = tf_config_workers() if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else 1
    chief = is_chief() or workers == 1
    run_dir = run_dir or os.path.join("runs", cfg["name"])
    if chief and not resume:  # refuse before any work; nothing is removed until config and data are checked
        check_new_run(run_dir, overwrite=overwrite)
    started = time.time()
    seed = int(cfg["seed"])
    keras.utils.set_random_seed(seed)
    splits = split_specs(cfg)
    if not splits["validation"]:
        raise ConfigError("Training needs a validation split: set data.split.validation > 0. "
                          f"Received: split={cfg['data']['split']!r}")
    transform = build_transform(cfg)
    batch_size = int(tcfg["batch_size"])
    if batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"training.batch_size is global and must divide among the {strategy.num_replicas_in_sync} "
                          f"replicas. Received: batch_size={batch_size}")
    model = _compiled_model(cfg, strategy)
    generative = tcfg["task"] == "generative"
    train_data, val_data = _datasets(cfg, splits, transform, model, workers)
    # Config, data and model are good: only now is the run directory touched.
    out_dir = _prepare_out_dir(run_dir, chief=chief, resume=resume, overwrite=overwrite)
    env = _environment(strategy, workers, seed, started)
    _record_start(out_dir, cfg, splits, env, resume=resume)

    callbacks = [keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=resume),
                 keras.callbacks.TensorBoard(os.path.join(out_dir, "tb"), write_graph=False)]
    callbacks += best_epoch_callbacks(tcfg.get("early_stopping"), out_dir=out_dir, generative=generative,
                                      history=read_history(os.path.join(out_dir, "history.csv")) if resume else [])
    context = RunContext(config=cfg, splits=splits, transform=transform, model=model, out_dir=out_dir, chief=chief)
    for reporter in reporters:
        callbacks += reporter.callbacks(context)
    t0 = time.perf_counter()
    history = fit(model, train_data, validation_data=val_data, epochs=int(tcfg["epochs"]), callbacks=callbacks,
                  verbose=verbose if chief else 0, backup_dir=os.path.join(out_dir, "backup"),
                  backup_steps=tcfg.get("backup_steps"), write_backups=chief)
    train_seconds = time.perf_counter() - t0
    with atomic_path(os.path.join(out_dir, "model.keras"), suffix=".keras") as tmp:
        model.save(tmp)

    if chief:
        for reporter in reporters:
            reporter.after_training(context)
    summary = _summary(cfg, run_dir, out_dir, model, history, env, train_seconds=train_seconds,
                       batch_size=batch_size)
    write_atomic(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    env["end"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_atomic(os.path.join(out_dir, "environment.json"), json.dumps(env, indent=1))
    if not chief:
        shutil.rmtree(out_dir, ignore_errors=True)
    return summary


def _compiled_model(cfg: Mapping[str, Any], strategy: tf.distribute.Strategy) -> keras.Model:
    """The config's model under ``strategy``, compiled for its task (mixed precision for this model only)."""
    tcfg, task = cfg["training"], cfg["training"]["task"]
    previous_policy = keras.mixed_precision.global_policy()
    if tcfg.get("mixed_precision"):  # float16 compute, float32 variables; the policy applies to this model only
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            model = build_model(cfg)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    with strategy.scope():
        binary = task in ("classification", "regression") and model.outputs[0].shape[-1] == 1
        if task == "generative" and isinstance(model, OwnStepModel):  # its own train_step, the config's optimizer
            model.compile(optimizer=build_optimizer(cfg))
        elif task == "generative":  # the model's own train_step and optimizers (a GAN's two)
            model.compile()
        elif task in ("anomaly", "proportions"):  # the model's own train_step, the config's optimizer
            model.compile(optimizer=build_optimizer(cfg))
        elif task == "regression":
            model.compile(optimizer=build_optimizer(cfg), loss="mse", metrics=["mae"])
        elif task == "segmentation":  # pixels labelled -1 (no charge) do not count
            model.compile(optimizer=build_optimizer(cfg),
                          loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
        else:
            model.compile(optimizer=build_optimizer(cfg),
                          loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
                          metrics=["accuracy", keras.metrics.AUC(name="auc")] if binary else ["accuracy"])
    return model


def _prepare_out_dir(run_dir: str, *, chief: bool, resume: bool, overwrite: bool) -> str:
    """Where this process writes: the run directory (cleared of hepflow's entries for a new run), or a
    scratch folder on workers other than the chief (their files are identical)."""
    if not chief:
        return tempfile.mkdtemp(prefix="hepflow-worker-")
    if not resume:
        check_new_run(run_dir, overwrite=overwrite)  # again: another process may have started meanwhile
        clear_run(run_dir)
        os.makedirs(run_dir, exist_ok=True)
    return run_dir


def _environment(strategy: tf.distribute.Strategy, workers: int, seed: int, started: float) -> dict[str, Any]:
    """``environment.json``: versions, git revision, host, strategy, seeds, start time."""
    return {"versions": package_versions(), "git_revision": git_revision(), "host": socket.gethostname(),
            "platform": platform.platform(), "argv": sys.argv, "cpu_count": os.cpu_count(),
            "strategy": strategy_name(strategy), "replicas": strategy.num_replicas_in_sync, "workers": workers,
            "seeds": {"run": seed, "validation": seed + 1},
            "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))}


def _record_start(out_dir: str, cfg: Mapping[str, Any], splits, env: dict[str, Any], *, resume: bool) -> None:
    """A new run writes its config, samples and hparams; a resumed one trims its history to the backup
    and keeps its first start time."""
    if resume:
        _truncate_history(os.path.join(out_dir, "history.csv"), os.path.join(out_dir, "backup"))
    if resume and os.path.exists(os.path.join(out_dir, "environment.json")):
        with open(os.path.join(out_dir, "environment.json")) as f:
            previous = json.load(f)
        env["start"], env["resumed"] = previous.get("start"), previous.get("resumed", []) + [env["start"]]
    else:
        write_atomic(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(dict(cfg), sort_keys=False))
        write_atomic(os.path.join(out_dir, "samples.yaml"), yaml.safe_dump(samples_record(splits), sort_keys=False))
        _log_hparams(os.path.join(out_dir, "tb"), cfg)
    write_atomic(os.path.join(out_dir, "environment.json"), json.dumps(env, indent=1))


def _summary(cfg: Mapping[str, Any], run_dir: str, out_dir: str, model: keras.Model, history, env: Mapping[str, Any],
             *, train_seconds: float, batch_size: int) -> dict[str, Any]:
    """``summary.json``: parameters, training time, jets seen, the last epoch and the best validation loss."""
    epochs = [{k: v for k, v in row.items() if k != "epoch"}  # resumed runs append to history.csv
              for row in read_history(os.path.join(out_dir, "history.csv"))]
    steps_per_epoch = int(history.params.get("steps") or 0)
    return {"name": cfg["name"], "run_dir": run_dir, "model": cfg["model"]["name"],
            "params": int(model.count_params()), "train_seconds": round(train_seconds, 1),
            "epochs": len(epochs), "train_jets_seen": len(epochs) * steps_per_epoch * batch_size,
            "strategy": env["strategy"], "replicas": env["replicas"],
            "last_epoch": epochs[-1] if epochs else {k: float(v[-1]) for k, v in history.history.items()},
            "best_val_loss": min((e["val_loss"] for e in epochs if "val_loss" in e), default=None)}


def _truncate_history(path: str, backup_dir: str) -> None:
    """Keeps the rows of the epochs the backup completed (a kill can fall between a row and its backup)."""
    pos = latest_backup(backup_dir)
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = int(pos["completed_epochs"]) if pos else 0
    if len(lines) > keep + 1:
        write_atomic(path, "".join(lines[:keep + 1]))
