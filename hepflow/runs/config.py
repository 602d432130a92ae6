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
                                     # or segmentation: a class per pixel, the int feature `target` (-1: ignored),
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
      service_compression: null      # null (batches travel uncompressed) or AUTO (snappy; slow networks)
      monitor_every: 5               # generative: shower plots in TensorBoard every N epochs

Every key must be one hepflow knows and every value of the expected type: a typo such as
``training: {epoch: 5}`` is a :class:`hepflow.errors.ConfigError` naming the key, its section and
the closest valid name, never a run with defaults. Samples are split into train, validation and
test by file: see :mod:`hepflow.runs.splits`.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import yaml

from hepflow import models
from hepflow.data import Compose, SampleSpec
from hepflow.errors import ConfigError
from hepflow.ops.registry import TRANSFORMS as OPS_TRANSFORMS
from hepflow.reco import TRANSFORMS as RECO_TRANSFORMS

__all__ = ["load_config", "apply_overrides", "build_transform", "build_model", "build_optimizer", "SCHEDULES", "TASKS",
           "STRATEGIES", "MODELS"]

#: ``training.strategy`` names (see :mod:`hepflow.training.distribute`).
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
TASKS = ("classification", "regression", "segmentation", "generative", "anomaly", "proportions")

DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "data": {"dir": ".", "split": {"validation": 0.1, "test": 0.1}, "mix": "exact"},
    "transform": [],
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "training": {"epochs": 10, "batch_size": 128, "steps_per_epoch": None, "validation_steps": None,
                 "early_stopping": {"patience": 3}, "cache": "auto", "task": "classification", "target": None,
                 "target_scale": 1.0, "strategy": "auto", "mixed_precision": False, "backup_steps": None,
                 "service": None, "service_compression": None, "monitor_every": 5},
}

#: ``learning_rate: {schedule: <name>, ...}`` → the Keras schedule class.
SCHEDULES = {"cosine_decay": "CosineDecay", "exponential_decay": "ExponentialDecay",
             "inverse_time_decay": "InverseTimeDecay", "piecewise_constant_decay": "PiecewiseConstantDecay",
             "polynomial_decay": "PolynomialDecay", "cosine_decay_restarts": "CosineDecayRestarts"}

_TOP_LEVEL = {"name", "seed", "data", "transform", "model", "optimizer", "training"}
#: ``model.name`` → the factory in :mod:`hepflow.models`.
MODELS = {name: getattr(models, name) for name in models.__all__}
TRANSFORMS = {**OPS_TRANSFORMS, **RECO_TRANSFORMS}  # config name → transform class or factory
_DATA_KEYS = {"dir", "samples", "split", "mix"}
_MODEL_KEYS = {"name", "args"}
_SAMPLE_KEYS = {f.name for f in dataclasses.fields(SampleSpec)}
_EARLY_STOPPING_KEYS = {"monitor", "patience"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: ``training`` entries: (check, what is expected).
_TRAINING: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "steps_per_epoch": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
    "validation_steps": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
    "early_stopping": (lambda v: v is None or isinstance(v, Mapping), "null or a mapping {monitor, patience}"),
    "cache": (lambda v: v is None or (isinstance(v, str) and v != ""), "null, auto, memory or a folder"),
    "task": (lambda v: v in TASKS, f"one of {list(TASKS)}"),
    "target": (lambda v: v is None or (isinstance(v, str) and v != ""), "null or a feature name"),
    "target_scale": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "strategy": (lambda v: isinstance(v, str), "a strategy name"),
    "mixed_precision": (lambda v: isinstance(v, bool), "true or false"),
    "backup_steps": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
    "service": (lambda v: v is None or (isinstance(v, str) and v != ""), "null or grpc://host:port"),
    "service_compression": (lambda v: v in (None, "AUTO"), "null or AUTO"),
    "monitor_every": (lambda v: _is_int(v) and v >= 1, "a positive int"),
}


def _closest(key: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _refuse_unknown(where: str, section: str, mapping: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raises :class:`ConfigError` naming the first key of ``mapping`` not in ``known``."""
    for key in mapping:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' in {section}{_closest(key, known)}. Expected some of "
                              f"{sorted(known)}. Received: {key}={mapping[key]!r}")


def _signature_keys(fn: Callable) -> tuple[set[str], bool]:
    """The keyword arguments ``fn`` takes, and whether it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def _check_arguments(where: str, section: str, fn: Callable, args: Mapping[str, Any]) -> None:
    """Refuses arguments that ``fn`` does not take (unless it takes ``**kwargs``)."""
    names, open_ended = _signature_keys(fn)
    if not open_ended:
        _refuse_unknown(where, section, args, sorted(names))


def _optimizers() -> dict[str, type]:
    """Keras optimizer classes by lower-case name (``adam``, ``adamw``, ``sgd``, ...)."""
    return {c.__name__.lower(): c for c in vars(keras.optimizers).values()
            if isinstance(c, type) and issubclass(c, keras.optimizers.Optimizer)
            and c is not keras.optimizers.Optimizer}


def _check_schema(cfg: Mapping[str, Any], where: str) -> None:
    """Every key known, every value of the expected type; a :class:`ConfigError` naming the first that is not."""
    _refuse_unknown(where, "the config's top level", cfg, sorted(_TOP_LEVEL))
    if not isinstance(cfg.get("name"), str) or not cfg["name"] or cfg["name"] in (".", "..") \
            or any(c in cfg["name"] for c in "/\\") or cfg["name"].startswith("."):
        raise ConfigError(f"{where}: `name` must be a non-empty string without path separators that does not "
                          f"start with '.' (it names the run directory). Received: name={cfg.get('name')!r}")
    if not _is_int(cfg["seed"]) or cfg["seed"] < 0:
        raise ConfigError(f"{where}: `seed` must be an int >= 0. Received: seed={cfg['seed']!r}")
    for section in ("data", "optimizer", "training"):
        if not isinstance(cfg[section], Mapping):
            raise ConfigError(f"{where}: `{section}` must be a mapping. Received: {section}={cfg[section]!r}")
    data = cfg["data"]
    _refuse_unknown(where, "`data`", data, sorted(_DATA_KEYS))
    if not isinstance(data.get("dir"), str) or not data["dir"]:
        raise ConfigError(f"{where}: `data.dir` must be a folder. Received: dir={data.get('dir')!r}")
    samples = data.get("samples")
    if not samples or not isinstance(samples, list):
        raise ConfigError(f"{where}: `data.samples` must list the samples. Received: samples={samples!r}")
    for i, entry in enumerate(samples):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: each entry of `data.samples` must be a mapping of SampleSpec fields. "
                              f"Received: sample {i} = {entry!r}")
        _refuse_unknown(where, f"`data.samples[{i}]` ({entry.get('name', '?')})", entry, sorted(_SAMPLE_KEYS))
    training = cfg["training"]
    _refuse_unknown(where, "`training`", training, sorted(_TRAINING))
    for key, (ok, expected) in _TRAINING.items():
        if not ok(training[key]):
            raise ConfigError(f"{where}: `training.{key}` must be {expected}. Received: {key}={training[key]!r}")
    if training["early_stopping"] is not None:
        _refuse_unknown(where, "`training.early_stopping`", training["early_stopping"], sorted(_EARLY_STOPPING_KEYS))
        patience = training["early_stopping"].get("patience", 3)
        if not _is_int(patience) or patience < 0:
            raise ConfigError(f"{where}: `training.early_stopping.patience` must be an int >= 0. "
                              f"Received: patience={patience!r}")
    model = cfg.get("model")
    if not isinstance(model, Mapping) or model.get("name") not in MODELS:
        name = model.get("name") if isinstance(model, Mapping) else model
        raise ConfigError(f"{where}: `model.name` must be one of {sorted(MODELS)}"
                          f"{_closest(name, list(MODELS))}. Received: model={model!r}")
    _refuse_unknown(where, "`model`", model, sorted(_MODEL_KEYS))
    if not isinstance(model.get("args") or {}, Mapping):
        raise ConfigError(f"{where}: `model.args` must be a mapping. Received: args={model.get('args')!r}")
    _check_arguments(where, f"`model.args` of {model['name']}", MODELS[model["name"]], model.get("args") or {})
    _check_optimizer(cfg["optimizer"], where)


def _check_optimizer(opt: Mapping[str, Any], where: str) -> None:
    optimizers = _optimizers()
    name = opt.get("name", "adam")
    if not isinstance(name, str) or name.lower() not in optimizers:
        raise ConfigError(f"{where}: `optimizer.name` must be a Keras optimizer, one of {sorted(optimizers)}"
                          f"{_closest(name, list(optimizers))}. Received: name={name!r}")
    # Keras optimizers take **kwargs only to refuse them: the named arguments of the class and its base are all
    known = set().union(*(_signature_keys(c.__init__)[0] for c in optimizers[name.lower()].__mro__
                          if issubclass(c, keras.optimizers.Optimizer)))
    _refuse_unknown(where, f"`optimizer` ({name})", {k: v for k, v in opt.items() if k != "name"}, sorted(known))
    lr = opt.get("learning_rate", 1e-3)
    if isinstance(lr, Mapping):
        schedule = lr.get("schedule")
        if schedule not in SCHEDULES:
            raise ConfigError(f"{where}: `optimizer.learning_rate.schedule` must be one of {sorted(SCHEDULES)}"
                              f"{_closest(schedule, list(SCHEDULES))}. Received: schedule={schedule!r}")
        cls = getattr(keras.optimizers.schedules, SCHEDULES[schedule])
        _check_arguments(where, f"`optimizer.learning_rate` ({schedule})", cls.__init__,
                         {k: v for k, v in lr.items() if k != "schedule"})
    elif not (_is_number(lr) and lr > 0):
        raise ConfigError(f"{where}: `optimizer.learning_rate` must be a number > 0 or a schedule "
                          f"{{schedule: cosine_decay, ...}}. Received: learning_rate={lr!r}")


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
            raise ConfigError(f"An override must look like key.sub=value. Received: {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override {item!r}: '{p}' is not a section. Received: {node!r}")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"Override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}). "
                              f"Received: {value!r}") from None
    return out


def load_config(source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reads a config (a YAML path or a mapping), applies overrides and defaults, and validates it.

    Every key must be one hepflow knows (a typo such as ``training: {epoch: 5}`` is refused
    with the closest valid name, never ignored), every value of the expected type, and model,
    transform and optimizer arguments ones their classes take.

    Raises:
        ConfigError: a missing or unparsable file, an unknown key, a wrong type, bad split
            fractions, or an unknown transform, model or optimizer; the message names the entry.
    """
    where = "config"
    if isinstance(source, Mapping):
        raw = dict(source)
    else:
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise ConfigError(f"Config file not found: {where}. Received: config={where!r}")
        with open(where) as f:
            try:
                raw = yaml.safe_load(f)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ConfigError(f"{where}: not valid YAML{at}: {problem}. Received: a YAML syntax error") from None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: a config must be a mapping. Received: {raw!r}")
    cfg = _numbers(_merge(DEFAULTS, apply_overrides(raw, overrides)))
    _check_schema(cfg, where)
    split = cfg["data"]["split"]
    if (not isinstance(split, Mapping) or set(split) - {"validation", "test"}
            or not all(_is_number(v) and 0 <= v < 1 for v in split.values())
            or sum(split.values()) >= 1):
        raise ConfigError(f"{where}: `data.split` must map validation/test to fractions in [0, 1) summing "
                          f"below 1. Received: split={split!r}")
    _transform_items(cfg["transform"], where)
    if cfg["data"].get("mix") not in ("exact", "sampled"):
        raise ConfigError(f"{where}: `data.mix` must be 'exact' or 'sampled'. "
                          f"Received: mix={cfg['data'].get('mix')!r}")
    task = cfg["training"]["task"]
    if (task in ("regression", "segmentation")) != bool(cfg["training"]["target"]):
        raise ConfigError(f"{where}: `training.task` must be classification, generative (a model with its own "
                          "train_step, e.g. calogan), anomaly (an autoencoder), proportions (label_proportions), "
                          "or regression or segmentation with a `training.target` "
                          f"feature. Received: task={task!r}, target={cfg['training']['target']!r}")
    if cfg["training"]["strategy"] not in STRATEGIES:
        raise ConfigError(f"{where}: `training.strategy` must be one of {STRATEGIES}. "
                          f"Received: strategy={cfg['training']['strategy']!r}")
    return cfg


def _transform_items(spec: Any, where: str = "config") -> list[tuple[str, dict[str, Any]]]:
    items = [spec] if isinstance(spec, Mapping) else list(spec or [])
    out = []
    for item in items:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ConfigError(f"{where}: each transform is `name: {{args}}`. Received: {item!r}")
        (name, args), = item.items()
        if name not in TRANSFORMS:
            raise ConfigError(f"{where}: unknown transform {name!r}{_closest(name, list(TRANSFORMS))}. Expected "
                              f"one of {sorted(TRANSFORMS)}. Received: transform={item!r}")
        if not isinstance(args or {}, Mapping):
            raise ConfigError(f"{where}: the arguments of transform {name!r} must be a mapping. Received: {args!r}")
        _check_arguments(where, f"transform `{name}`", TRANSFORMS[name], args or {})
        out.append((name, dict(args or {})))
    return out


def build_transform(config: Mapping[str, Any]):
    """The pipeline transform of a config (``None`` when it lists none)."""
    registry = TRANSFORMS
    parts = []
    for name, args in _transform_items(config["transform"]):
        try:
            parts.append(registry[name](**args))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config: transform `{name}` cannot be built from its arguments: {e}. "
                              f"Received: {name}={args!r}") from None
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Compose(parts)


def build_model(config: Mapping[str, Any]):
    """The Keras model of a config: ``hepflow.models.<model.name>(**model.args)``."""
    model = config["model"]
    args = dict(model.get("args") or {})
    try:
        return MODELS[model["name"]](**args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config: model `{model['name']}` cannot be built from `model.args`: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Received: args={args!r}") from None


def build_optimizer(config: Mapping[str, Any]):
    """A Keras optimizer from ``optimizer: {name: adam, learning_rate: ...}`` (any Keras optimizer)."""
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
        raise ConfigError(f"Cannot build the optimizer. Received: optimizer={config['optimizer']!r} ({e})") from None
