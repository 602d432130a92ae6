from __future__ import annotations

import glob
import os

import pytest

from hepflow.errors import ConfigError, DataError
from hepflow.runs import apply_overrides, build_model, build_optimizer, build_transform, load_config, split_specs

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "*", "*.yaml")))


def minimal(**over):
    cfg = {"name": "t", "data": {"dir": "/nowhere", "samples": [{"name": "a", "files": "a_*.h5", "keys": ["x"]}]},
           "model": {"name": "deeptop_cnn"}}
    cfg.update(over)
    return cfg


def test_defaults_and_overrides():
    cfg = load_config(minimal(), ["training.epochs=3", "optimizer.learning_rate=1e-4", "data.split.test=0.2"])
    assert cfg["training"]["epochs"] == 3 and cfg["training"]["batch_size"] == 128
    assert cfg["optimizer"] == {"name": "adam", "learning_rate": 1e-4}
    assert cfg["data"]["split"] == {"validation": 0.1, "test": 0.2}
    assert apply_overrides({}, ["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize("bad, match", [
    ({"modle": {}}, "unknown key 'modle' in the config's top level \\(did you mean 'model'\\?\\)"),
    ({"model": {"name": "resnet"}}, "model.name` must be one of"),
    ({"transform": [{"jet_imagez": {}}]}, "unknown transform 'jet_imagez'"),
    ({"data": {"samples": []}}, "data.samples"),
    ({"name": "a/b"}, "`name` must be"),
])
def test_bad_configs_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_config(minimal(**bad))


def test_bad_split_and_override():
    cfg = minimal()
    cfg["data"]["split"] = {"validation": 0.6, "test": 0.5}
    with pytest.raises(ConfigError, match="summing below 1"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(minimal(), ["training.epochs"])
    with pytest.raises(ConfigError, match="Config file not found"):
        load_config("/no/such.yaml")
    with pytest.raises(ConfigError, match="regression or segmentation with a `training.target`"):
        load_config(minimal(), ["training.task=regression"])
    with pytest.raises(ConfigError, match="training.strategy` must be one of .*Received: strategy='tpu'"):
        load_config(minimal(), ["training.strategy=tpu"])
    with pytest.raises(ConfigError, match="backup_steps` must be null or a positive int. Received: backup_steps=0"):
        load_config(minimal(), ["training.backup_steps=0"])


@pytest.mark.parametrize("override, match", [
    ("training.epoch=5", r"unknown key 'epoch' in `training` \(did you mean 'epochs'\?\).*Received: epoch=5"),
    ("data.mixx=sampled", r"unknown key 'mixx' in `data` \(did you mean 'mix'\?\)"),
    ("training.early_stopping.patiense=2", r"unknown key 'patiense' in `training.early_stopping`"),
    ("training.epochs=ten", r"`training.epochs` must be a positive int. Received: epochs='ten'"),
    ("training.batch_size=big", r"`training.batch_size` must be a positive int. Received: batch_size='big'"),
    ("training.epochs=0", r"`training.epochs` must be a positive int"),
    ("training.mixed_precision=maybe", r"`training.mixed_precision` must be true or false"),
    ("seed=abc", r"`seed` must be an int >= 0. Received: seed='abc'"),
    ("model.args={input_shap: [37, 37, 1]}",
     r"unknown key 'input_shap' in `model.args` of deeptop_cnn \(did you mean 'input_shape'\?\)"),
    ("model.argz={}", r"unknown key 'argz' in `model`"),
    ("optimizer.beta1=0.8", r"unknown key 'beta1' in `optimizer` \(adam\) \(did you mean 'beta_1'\?\)"),
    ("optimizer.name=adamm", r"`optimizer.name` must be a Keras optimizer.*\(did you mean 'adam'\?\)"),
    ("optimizer.learning_rate=fast", r"`optimizer.learning_rate` must be a number > 0"),
    ("optimizer.learning_rate={schedule: cosine_decay, initial_learning_rate: 0.1, decay_step: 10}",
     r"unknown key 'decay_step' in `optimizer.learning_rate` \(cosine_decay\) \(did you mean 'decay_steps'\?\)"),
    ("transform=[{jet_images: {npixx: 37}}]", r"unknown key 'npixx' in transform `jet_images` \(did you mean 'npix'\?\)"),
    ("name=..", r"`name` must be a non-empty string without path separators"),
    ("name=.", r"`name` must be"),
])
def test_unknown_keys_and_wrong_types_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(minimal(), [override])


def test_a_misspelled_sample_field_is_refused():
    cfg = minimal()
    cfg["data"]["samples"][0]["lable"] = 1
    with pytest.raises(ConfigError, match=r"unknown key 'lable' in `data.samples\[0\]` \(a\) \(did you mean 'label'\?\)"):
        load_config(cfg)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\nmodel: {name: deeptop_cnn\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_config(str(path))


def test_bad_model_arguments_are_a_config_error():
    with pytest.raises(ConfigError, match="model `deeptop_cnn` cannot be built"):
        build_model(load_config(minimal(), ["model.args={input_shape: nonsense}"]))


def test_every_shipped_config_passes_the_strict_check():
    assert CONFIGS
    for path in CONFIGS:
        load_config(path)


def test_learning_rate_schedules_from_the_config():
    from hepflow.runs import build_optimizer

    cfg = load_config(minimal(), ["optimizer.learning_rate={schedule: exponential_decay, initial_learning_rate: 0.01, "
                                  "decay_steps: 10, decay_rate: 0.5}"])
    opt = build_optimizer(cfg)
    assert float(opt.learning_rate) == pytest.approx(0.01)
    opt.iterations.assign(10)
    assert float(opt.learning_rate) == pytest.approx(0.005)  # halved after decay_steps
    with pytest.raises(ConfigError, match="learning_rate.schedule` must be one of"):
        build_optimizer(load_config(minimal(), ["optimizer.learning_rate={schedule: warmup}"]))


def test_split_by_file_is_disjoint_and_ordered(jet_dir, tmp_path):
    for i in range(10):
        (tmp_path / f"s_{i:02d}.h5").write_bytes(b"")
    cfg = load_config(minimal(data={"dir": str(tmp_path), "samples": [{"name": "s", "files": "s_*.h5", "keys": ["x"]}],
                                    "split": {"validation": 0.2, "test": 0.1}}))
    parts = {k: [os.path.basename(f) for s in v for f in s.files] for k, v in split_specs(cfg).items()}
    assert parts["train"] == [f"s_{i:02d}.h5" for i in range(7)]
    assert parts["validation"] == ["s_07.h5", "s_08.h5"] and parts["test"] == ["s_09.h5"]
    cfg["data"]["split"] = {"validation": 0.5, "test": 0.5 - 1e-9}
    with pytest.raises(DataError, match="cannot be split"):
        split_specs(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_example_configs_build(path):
    cfg = load_config(path)
    model, transform = build_model(cfg), build_transform(cfg)
    keys = set()
    for sample in cfg["data"]["samples"]:
        k = sample["keys"]
        keys |= set(k) if isinstance(k, dict) else {str(p).strip("/").replace("/", "_") for p in k}
    assert model.count_params() > 1000
    if transform is None and not cfg["model"]["name"].startswith("calo"):  # trees, Lund coordinates: read as stored
        assert {t.name for t in model.inputs} <= keys
    optimizer, lr = build_optimizer(cfg), cfg["optimizer"]["learning_rate"]
    if isinstance(lr, dict):  # a schedule: starts at its initial rate, then decays
        schedule = optimizer._learning_rate
        assert float(schedule(0)) == pytest.approx(lr["initial_learning_rate"])
        assert float(schedule(lr["decay_steps"])) < lr["initial_learning_rate"]
    else:
        assert optimizer.learning_rate.numpy() == pytest.approx(lr)


def test_every_model_has_a_config():
    from hepflow import models

    names = {load_config(p)["model"]["name"] for p in CONFIGS}
    assert names == set(models.__all__) - {"jet_cnn"}
