"""``hepflow scan SCAN.yaml``: grid or random searches over config keys, several runs at a time.

A scan file::

    config: configs/top_tagging/high_level_dnn.yaml   # the base config (relative to the scan file or cwd)
    out: runs/scans/high_level_dnn                    # one run directory per trial under it
    method: grid                                      # grid (every combination) or random
    trials: 8                                         # random: how many trials
    seed: 0                                           # random: which trials
    parallel: 2                                       # runs at a time (processes)
    metric: val_auc                                   # sorts the results table (best first)
    overrides: [training.epochs=5]                    # applied to every trial
    space:
      optimizer.learning_rate: [0.001, 0.0003]        # a list: these values
      model.args.dropout: {low: 0.0, high: 0.3}       # random only: uniform (log: true for log-uniform)

Each trial is ``hepflow train CONFIG --run-dir OUT/trial_NNN --set key=value ...`` in its own
process (with GPUs, trials take turns on them: ``CUDA_VISIBLE_DEVICES`` is set per process).
The scan is resumable: finished trials are skipped, interrupted ones continue from their backup
(``--resume``), and a trial that fails is retried once. Results go to ``OUT/results.csv`` and
``OUT/results.md``, sorted by the metric; ``tensorboard --logdir OUT`` shows the trials in the
HParams dashboard (each run logs its hyperparameters; the scan writes the dashboard's config).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import yaml
from tensorboard.plugins.hparams import api as hp

from hepflow.errors import ConfigError
from hepflow.io import write_atomic
from hepflow.runs import list_runs

__all__ = ["load_scan", "scan_trials", "run_scan"]

_KEYS = {"config", "out", "method", "trials", "seed", "parallel", "metric", "overrides", "space"}
_HIGHER_IS_BETTER = {"val_auc", "val_accuracy", "auc", "accuracy"}


def load_scan(path: str) -> dict[str, Any]:
    """Reads and validates a scan file; ``config`` is resolved against the scan file's folder or the cwd."""
    try:
        with open(path) as f:
            scan = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"Cannot read the scan file {path}. Received: {e}") from None
    if not isinstance(scan, Mapping):
        raise ConfigError(f"{path}: a scan file is a mapping of {sorted(_KEYS)}. Received: {scan!r}")
    unknown = set(scan) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(_KEYS)}.")
    scan = {"method": "grid", "trials": None, "seed": 0, "parallel": 1, "metric": "val_loss", "overrides": [],
            **scan}
    for key in ("config", "out", "space"):
        if not scan.get(key):
            raise ConfigError(f"{path}: `{key}` is required. Received: {scan.get(key)!r}")
    config = scan["config"]
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), config)
    scan["config"] = config if os.path.exists(config) or not os.path.exists(beside) else beside
    if scan["method"] not in ("grid", "random"):
        raise ConfigError(f"{path}: `method` must be grid or random. Received: {scan['method']!r}")
    if scan["method"] == "random" and not (isinstance(scan["trials"], int) and scan["trials"] > 0):
        raise ConfigError(f"{path}: random scans need `trials`, a positive int. Received: {scan['trials']!r}")
    if not (isinstance(scan["parallel"], int) and scan["parallel"] > 0):
        raise ConfigError(f"{path}: `parallel` must be a positive int. Received: {scan['parallel']!r}")
    if not isinstance(scan["space"], Mapping):
        raise ConfigError(f"{path}: `space` maps config keys to value lists. Received: {scan['space']!r}")
    for key, values in scan["space"].items():
        ranged = isinstance(values, Mapping) and {"low", "high"} <= set(values)
        if not (isinstance(values, list) and values) and not (ranged and scan["method"] == "random"):
            raise ConfigError(f"{path}: space.{key} must be a non-empty list (or {{low, high}} in random scans). "
                              f"Received: {values!r}")
    return scan


def scan_trials(scan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trials of a scan: one ``{key: value}`` per run, in a fixed order."""
    space = scan["space"]
    keys = list(space)
    if scan["method"] == "grid":
        return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    rng = np.random.default_rng(int(scan["seed"]))
    trials = []
    for _ in range(int(scan["trials"])):
        trial = {}
        for k in keys:
            v = space[k]
            if isinstance(v, list):
                trial[k] = v[int(rng.integers(len(v)))]
            elif v.get("log"):
                trial[k] = float(math.exp(rng.uniform(math.log(v["low"]), math.log(v["high"]))))
            else:
                trial[k] = float(rng.uniform(v["low"], v["high"]))
        trials.append(trial)
    return trials


def _gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _command(scan, run_dir: str, trial: Mapping[str, Any], resume: bool) -> list[str]:
    base = [sys.executable, "-m", "hepflow.cli.main", "train"]
    if resume:
        return base + ["--resume", run_dir]
    sets = list(scan["overrides"]) + [f"{k}={json.dumps(v)}" for k, v in trial.items()]
    return base + [scan["config"], "--run-dir", run_dir, "--overwrite"] + sum((["--set", s] for s in sets), [])


def _write_hparams_config(out: str, keys: list[str], metric: str) -> None:
    """The HParams dashboard's config for the whole scan, at the top of its log dir."""
    metrics = [hp.Metric(f"epoch_{m}", group="validation", display_name=m)
               for m in dict.fromkeys([metric.removeprefix("val_"), "loss", "auc", "accuracy"])]
    with tf.summary.create_file_writer(out).as_default():
        hp.hparams_config(hparams=[hp.HParam(k) for k in keys], metrics=metrics)


def run_scan(path: str, *, progress: bool = True) -> list[dict[str, Any]]:
    """Runs (or resumes) the scan of ``path``; returns the results table, best first.

    Returns:
        One row per trial: ``trial``, the scanned values, ``status`` (finished or failed),
        ``attempts`` and the run's metrics (``best_val_loss``, ``val_auc``, ``val_accuracy``).
    """
    scan = load_scan(path)
    out = scan["out"]
    os.makedirs(out, exist_ok=True)
    trials = scan_trials(scan)
    with open(os.path.join(out, "scan.yaml"), "w") as f:
        yaml.safe_dump({**scan, "trials_resolved": trials}, f, sort_keys=False)
    _write_hparams_config(out, list(scan["space"]), scan["metric"])
    gpus = _gpu_count()
    names = [f"trial_{i:03d}" for i in range(len(trials))]
    pending = []
    for name, trial in zip(names, trials):
        run_dir = os.path.join(out, name)
        if os.path.exists(os.path.join(run_dir, "model.keras")):
            continue  # finished in an earlier invocation
        resume = os.path.exists(os.path.join(run_dir, "backup", "position.json"))
        pending.append({"name": name, "trial": trial, "run_dir": run_dir, "resume": resume, "attempts": 0})
    attempts: dict[str, int] = {}
    running: list[tuple[dict, subprocess.Popen, Any]] = []
    slot = 0
    done = len(trials) - len(pending)
    if progress:
        print(f"scan {path}: {len(trials)} trials, {done} already finished, {scan['parallel']} at a time", flush=True)
    while pending or running:
        while pending and len(running) < scan["parallel"]:
            job = pending.pop(0)
            job["attempts"] += 1
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            slot += 1
            log = open(os.path.join(out, f"{job['name']}.log"), "a")
            cmd = _command(scan, job["run_dir"], job["trial"], job["resume"])
            running.append((job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        time.sleep(0.2)
        for item in list(running):
            job, proc, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            attempts[job["name"]] = job["attempts"]
            if proc.returncode != 0 and job["attempts"] < 2:  # retry once, from the backup when there is one
                job["resume"] = os.path.exists(os.path.join(job["run_dir"], "backup", "position.json"))
                pending.append(job)
                continue
            done += 1
            if progress:
                state = "finished" if proc.returncode == 0 else f"failed (exit {proc.returncode}, see {log.name})"
                print(f"[{done}/{len(trials)}] {job['name']} {job['trial']}: {state}", flush=True)
    return _results(scan, names, trials, attempts)


def _results(scan, names, trials, attempts) -> list[dict[str, Any]]:
    out = scan["out"]
    records = {os.path.basename(r["run_dir"]): r for r in list_runs(out)}
    rows = []
    for name, trial in zip(names, trials):
        rec = records.get(name, {})
        rows.append({"trial": name, **trial,
                     "status": "finished" if rec.get("status") == "finished" else "failed",
                     "attempts": attempts.get(name, 0),
                     **{k: rec.get(k) for k in ("best_val_loss", "val_auc", "val_accuracy", "epochs")}})
    metric = "best_val_loss" if scan["metric"] == "val_loss" else scan["metric"]
    sign = -1 if metric in _HIGHER_IS_BETTER else 1
    rows.sort(key=lambda r: (r.get(metric) is None, sign * (r.get(metric) or 0)))
    columns = list(rows[0]) if rows else []
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(os.path.join(out, "results.csv"), text.getvalue())

    def cell(v):
        return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    write_atomic(os.path.join(out, "results.md"),
                 f"Scan of {scan['config']}, sorted by {scan['metric']} (best first)\n\n" + "\n".join(md) + "\n")
    return rows
