"""Training configs: one YAML file says what to train on what, and how.

A config (see ``configs/`` for one per model)::

    name: macaluso_shih_cnn          # the run's name; default run dir runs/<name>
    seed: 1
    data:
      dir: data/top_tagging          # sample files are relative to it (and it to the working dir)
      samples:                       # SampleSpec fields
        - {name: qcd, files: "qcd_*.h5", keys: [constituents, mass, tau], label: 0}
        - {name: top, files: "top_*.h5", keys: [constituents, mass, tau], label: 1}
      split: {validation: 0.1, test: 0.1}   # fractions of each sample's files, in sorted order:
                                            # train first, then validation, test last
      mix: exact                     # or sampled: rates too small for exact per-batch shares (1 % contamination)
    transform:                       # applied in order inside the pipeline (TF ops)
      - jet_images: {npix: 37}
    model: {name: macaluso_shih_cnn, args: {input_shape: [37, 37, 1]}}
    optimizer: {name: adam, learning_rate: 0.001}   # or a schedule:
      # learning_rate: {schedule: cosine_decay, initial_learning_rate: 0.001, decay_steps: 5000}
    training:
      epochs: 10
      batch_size: 128
      steps_per_epoch: null          # null: one pass over the training files per epoch
      validation_steps: null         # null: every validation jet; N: N balanced, shuffled batches
      early_stopping: {patience: 3}  # monitor: val_loss (default) or another val_ metric; null: off
      cache: auto                    # pipeline cache: auto, memory, a folder, or null
      task: classification           # or regression: predict the feature `target` (divided by target_scale),
                                     # or generative: a model with its own train_step and optimizers (calogan),
                                     # or anomaly: an autoencoder's own train_step, labels ignored (pca,
                                     # dense_autoencoder, conv_autoencoder, vae, adversarial_autoencoder),
                                     # or proportions: learning from label proportions (label_proportions)
      target: null                   # e.g. energy
      target_scale: 1.0
      strategy: auto                 # auto, default, mirrored or multi_worker (hepflow.training.distribute)
      mixed_precision: false         # true: float16 compute, float32 variables (for GPUs)
      backup_steps: null             # also back up every N steps (always at epoch ends)
      service: null                  # grpc://host:port of a tf.data service (hepflow data-service)
      monitor_every: 5               # generative: shower plots in TensorBoard every N epochs

Splitting by file keeps the test jets out of training whatever the shuffling, and every run
on the same ``data`` section sees the same test files.
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from hepflow.data import Compose, DataError, Normalize, SampleSpec

__all__ = ["load_config", "apply_overrides", "split_specs", "specs_in_dir", "refuse_seen_files", "build_transform",
           "build_model", "build_optimizer", "SPLITS", "SCHEDULES", "TASKS"]

SPLITS = ("train", "validation", "test")
TASKS = ("classification", "regression", "generative", "anomaly", "proportions")

DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "data": {"dir": ".", "split": {"validation": 0.1, "test": 0.1}, "mix": "exact"},
    "transform": [],
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "training": {"epochs": 10, "batch_size": 128, "steps_per_epoch": None, "validation_steps": None,
                 "early_stopping": {"patience": 3}, "cache": "auto", "task": "classification", "target": None,
                 "target_scale": 1.0, "strategy": "auto", "mixed_precision": False, "backup_steps": None,
                 "service": None, "monitor_every": 5},
}

#: ``learning_rate: {schedule: <name>, ...}`` → the Keras schedule class.
SCHEDULES = {"cosine_decay": "CosineDecay", "exponential_decay": "ExponentialDecay",
             "inverse_time_decay": "InverseTimeDecay", "piecewise_constant_decay": "PiecewiseConstantDecay",
             "polynomial_decay": "PolynomialDecay", "cosine_decay_restarts": "CosineDecayRestarts"}

_TOP_LEVEL = {"name", "seed", "data", "transform", "model", "optimizer", "training"}


def _transforms() -> dict[str, Any]:
    from hepflow.ops.calo import ShowerShapes
    from hepflow.ops.jets import ConstituentFeatures, HighLevelFeatures, JetImages

    return {"jet_images": JetImages, "constituent_features": ConstituentFeatures,
            "high_level_features": HighLevelFeatures, "shower_shapes": ShowerShapes, "normalize": Normalize}


def _models() -> dict[str, Any]:
    from hepflow import models

    return {name: getattr(models, name) for name in models.__all__}




_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(obj: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; make such strings floats, everywhere in a config."""
    if isinstance(obj, Mapping):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    if isinstance(obj, str) and _SCIENTIFIC.match(obj):
        return float(obj)
    return obj


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``key.sub=value`` overrides (values parsed as YAML), e.g. ``training.epochs=2``."""
    out = copy.deepcopy(dict(config))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(f"An override must look like key.sub=value. Received: {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise DataError(f"Override {item!r}: '{p}' is not a section. Received: {node!r}")
        node[leaf] = yaml.safe_load(value)
    return out


def load_config(source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reads a config (a YAML path or a mapping), applies overrides and defaults, and validates it.

    Raises:
        DataError: unknown sections, a missing model or samples, bad split fractions, or an
            unknown transform or model name; the message names the offending entry.
    """
    where = "config"
    if isinstance(source, Mapping):
        raw = dict(source)
    else:
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise DataError(f"Config file not found: {where}")
        with open(where) as f:
            raw = yaml.safe_load(f)
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: a config must be a mapping. Received: {raw!r}")
    cfg = _numbers(_merge(DEFAULTS, apply_overrides(raw, overrides)))
    unknown = set(cfg) - _TOP_LEVEL
    if unknown:
        raise DataError(f"{where}: unknown sections {sorted(unknown)}; expected some of {sorted(_TOP_LEVEL)}.")
    if not isinstance(cfg.get("name"), str) or not cfg["name"] or "/" in cfg["name"]:
        raise DataError(f"{where}: `name` must be a non-empty string without '/'. Received: {cfg.get('name')!r}")
    if not cfg["data"].get("samples"):
        raise DataError(f"{where}: `data.samples` must list the samples. Received: {cfg['data']!r}")
    model = cfg.get("model")
    if not isinstance(model, Mapping) or model.get("name") not in _models():
        raise DataError(f"{where}: `model.name` must be one of {sorted(_models())}. Received: model={model!r}")
    split = cfg["data"]["split"]
    if (not isinstance(split, Mapping) or set(split) - {"validation", "test"}
            or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in split.values())
            or sum(split.values()) >= 1):
        raise DataError(f"{where}: `data.split` must map validation/test to fractions in [0, 1) summing "
                        f"below 1. Received: split={split!r}")
    _transform_items(cfg["transform"], where)
    if cfg["data"].get("mix") not in ("exact", "sampled"):
        raise DataError(f"{where}: `data.mix` must be 'exact' or 'sampled'. Received: mix={cfg['data'].get('mix')!r}")
    task = cfg["training"]["task"]
    if task not in TASKS or (task == "regression") != bool(cfg["training"]["target"]):
        raise DataError(f"{where}: `training.task` must be classification, generative (a model with its own "
                        "train_step, e.g. calogan), anomaly (an autoencoder), proportions (label_proportions) "
                        "or regression with a `training.target` "
                        f"feature. Received: task={task!r}, target={cfg['training']['target']!r}")
    from hepflow.training.distribute import STRATEGIES

    if cfg["training"]["strategy"] not in STRATEGIES:
        raise DataError(f"{where}: `training.strategy` must be one of {STRATEGIES}. "
                        f"Received: strategy={cfg['training']['strategy']!r}")
    steps = cfg["training"]["backup_steps"]
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise DataError(f"{where}: `training.backup_steps` must be null or a positive int. Received: {steps!r}")
    return cfg


def _transform_items(spec: Any, where: str = "config") -> list[tuple[str, dict[str, Any]]]:
    items = [spec] if isinstance(spec, Mapping) else list(spec or [])
    out = []
    for item in items:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, Mapping) or len(item) != 1:
            raise DataError(f"{where}: each transform is `name: {{args}}`. Received: {item!r}")
        (name, args), = item.items()
        if name not in _transforms():
            raise DataError(f"{where}: unknown transform {name!r}; expected one of {sorted(_transforms())}.")
        out.append((name, dict(args or {})))
    return out


def build_transform(config: Mapping[str, Any]):
    """The pipeline transform of a config (``None`` when it lists none)."""
    registry = _transforms()
    parts = [registry[name](**args) for name, args in _transform_items(config["transform"])]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Compose(parts)


def build_model(config: Mapping[str, Any]):
    """The Keras model of a config: ``hepflow.models.<model.name>(**model.args)``."""
    model = config["model"]
    return _models()[model["name"]](**dict(model.get("args") or {}))


def build_optimizer(config: Mapping[str, Any]):
    """A Keras optimizer from ``optimizer: {name: adam, learning_rate: ...}`` (any Keras optimizer)."""
    import keras

    opt = dict(config["optimizer"])
    name = opt.pop("name", "adam")
    try:
        lr = opt.get("learning_rate")
        if isinstance(lr, Mapping):
            lr = dict(lr)
            schedule = lr.pop("schedule", None)
            if schedule not in SCHEDULES:
                raise ValueError(f"learning_rate.schedule must be one of {sorted(SCHEDULES)}; got {schedule!r}")
            opt["learning_rate"] = keras.optimizers.schedules.deserialize(
                {"class_name": SCHEDULES[schedule], "config": lr, "module": "keras.optimizers.schedules"})
        return keras.optimizers.get({"class_name": name, "config": opt})
    except (ValueError, TypeError) as e:
        raise DataError(f"Cannot build the optimizer. Received: optimizer={config['optimizer']!r} ({e})") from None


def split_specs(config: Mapping[str, Any]) -> dict[str, list[SampleSpec]]:
    """The config's samples split by file into ``train``, ``validation`` and ``test`` specs.

    Each sample's files are sorted; the last ``round(test · n)`` files (at least one when the
    fraction is > 0) go to test, the ones before to validation, the rest to train.

    Raises:
        DataError: a sample has too few files for the split.
    """
    data = config["data"]
    base = data.get("dir") or "."
    fractions = data["split"]
    out: dict[str, list[SampleSpec]] = {s: [] for s in SPLITS}
    for entry, files in _sample_entries(config):
        spec = SampleSpec(files=[f if os.path.isabs(f) else os.path.join(base, f) for f in files], **entry)
        paths = spec.resolve_files()
        n = len(paths)
        n_test = _count(fractions.get("test", 0), n)
        n_val = _count(fractions.get("validation", 0), n)
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"Sample '{spec.name}': {n} file(s) cannot be split into train/validation/test "
                            f"with {dict(fractions)}; write more, smaller files. Received: files={list(spec.files)!r}")
        parts = {"train": paths[:n_train], "validation": paths[n_train:n_train + n_val],
                 "test": paths[n_train + n_val:]}
        for split, chunk in parts.items():
            if chunk:
                out[split].append(SampleSpec(**{**spec.to_dict(), "files": chunk}))
    return out


def _sample_entries(config: Mapping[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """Each sample of the config as (its SampleSpec fields without ``files``, its file patterns).

    Raises:
        DataError: a sample is not a mapping.
    """
    out = []
    for entry in config["data"]["samples"]:
        if not isinstance(entry, Mapping):
            raise DataError(f"Each sample must be a mapping of SampleSpec fields. Received: {entry!r}")
        entry = dict(entry)
        files = entry.pop("files", None)
        out.append((entry, [files] if isinstance(files, str) else list(files or [])))
    return out


def specs_in_dir(config: Mapping[str, Any], directory: str | Sequence[str]) -> list[SampleSpec]:
    """The config's samples read from the files of ``directory`` instead of ``data.dir``.

    Each sample keeps its name, keys, label and selection; its file patterns (relative to
    ``data.dir``, or the file names of absolute ones) are looked up in ``directory``. Used to
    score trained runs on an independent, larger test sample (``hepflow evaluate --test-dir``);
    check it with :func:`refuse_seen_files`.

    Args:
        config: A training config.
        directory: A folder, or several: each sample then holds the matching files of every
            folder, in the order given (e.g. two test samples generated with other seeds).

    Raises:
        DataError: a folder is missing, a sample has no file in one, or two folders hold the
            same file (by path or by content), which would count its jets twice.
    """
    directories = [directory] if isinstance(directory, str) else list(directory)
    if not directories:
        raise DataError("specs_in_dir needs at least one test directory. Received: []")
    for d in directories:
        if not os.path.isdir(d):
            raise DataError(f"The test directory does not exist. Received: test_dir={d!r}")
    out = []
    for entry, files in _sample_entries(config):
        per_dir = []
        for d in directories:
            spec = SampleSpec(files=[os.path.join(d, os.path.basename(f) if os.path.isabs(f) else f)
                                     for f in files], **entry)
            per_dir.append(spec.resolve_files())
        for i in range(1, len(per_dir)):
            twice = _same_files(per_dir[i], [p for earlier in per_dir[:i] for p in earlier])
            if twice:
                raise DataError(f"Sample '{entry['name']}': test directory {directories[i]!r} holds files that an "
                                f"earlier test directory holds too (same path or bytes), so their jets would count "
                                f"twice. Received: {sorted(twice)[:3]}{' …' if len(twice) > 3 else ''}")
        out.append(SampleSpec(files=[p for paths in per_dir for p in paths], **entry))
    return out


def refuse_seen_files(specs: Sequence[SampleSpec], configs: Sequence[Mapping[str, Any]], *, where: str) -> None:
    """Raises if a file of ``specs`` is one the configs' runs trained or validated on.

    Files are compared by path and by content (a copy, or a chunk generated again with the
    training sample's seed); each file is read at most once.

    Raises:
        DataError: naming ``where`` and the offending files.
    """
    seen = [p for config in configs for split in ("train", "validation")
            for s in split_specs(config)[split] for p in s.files]
    overlap = sorted(_same_files([p for s in specs for p in s.files], seen))
    if overlap:
        raise DataError(f"{where} holds files the run trained or validated on, so it is no independent test "
                        f"sample. Received: {overlap[:3]}{' …' if len(overlap) > 3 else ''}")


def _same_files(candidates: Sequence[str], reference: Sequence[str]) -> list[str]:
    """The candidates that are one of the reference files: the same path or the same bytes."""
    ref_paths = set(reference)
    by_size: dict[int, list[str]] = {}
    for p in reference:
        by_size.setdefault(os.path.getsize(p), []).append(p)
    digests: dict[str, str] = {}

    def digest(path: str) -> str:
        if path not in digests:
            h = hashlib.sha1()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digests[path] = h.hexdigest()
        return digests[path]

    out = []
    for p in candidates:
        same_size = by_size.get(os.path.getsize(p), [])
        if p in ref_paths or (same_size and digest(p) in {digest(r) for r in same_size}):
            out.append(p)
    return out


def _count(fraction: float, n: int) -> int:
    return 0 if fraction <= 0 else max(1, round(fraction * n))
