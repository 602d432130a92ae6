"""``hepflow train`` on ROOT, Parquet, published-layout and tfds samples (configs/formats), with the
data made by ``hepflow generate jet-ntuples`` and ``hepflow datasets build`` from real Pythia jets."""
from __future__ import annotations

import os

import numpy as np
import pytest

from hepflow.cli.main import main
from hepflow.runs import load_config, split_specs
from hepflow.training import train

pytest.importorskip("uproot")
pytest.importorskip("pandas")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "formats")
QUICK = ["training.epochs=1", "training.steps_per_epoch=2", "training.batch_size=8", "training.cache=null"]


@pytest.mark.parametrize("fmt", ["root", "parquet", "published"])
def test_a_config_on_ntuples_trains_through_hepflow_train(fmt, pythia_jets_dir, tmp_path, capsys):
    data = tmp_path / fmt
    assert main(["generate", "jet-ntuples", "--from", str(pythia_jets_dir), "--out", str(data), "--format", fmt]) == 0
    assert f"{20 if fmt != 'published' else 10} {fmt} files" in capsys.readouterr().out
    cfg = os.path.join(CONFIGS, f"pfn_{fmt}.yaml")
    summary = train(cfg, run_dir=str(tmp_path / "run"), overrides=QUICK + [f"data.dir={data}"], verbose=0)
    assert summary["train_jets_seen"] == 16 and np.isfinite(summary["last_epoch"]["val_loss"])
    parts = split_specs(load_config(str(tmp_path / "run" / "config.yaml")))
    test_files = {os.path.basename(p) for s in parts["test"] for p in s.files}
    train_files = {os.path.basename(p) for s in parts["train"] for p in s.files}
    assert test_files and not test_files & train_files


def test_a_config_on_a_tfds_dataset_trains_on_its_splits(tmp_path, capsys):
    pytest.importorskip("tensorflow_datasets")
    dummy = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "top_tagging", "dummy_data", "reference")
    assert main(["datasets", "build", "top_tagging", "--config", "reference", "--data-dir", str(tmp_path / "tfds"),
                 "--manual-dir", dummy]) == 0
    overrides = QUICK + [f"data.dir={tmp_path}", "training.batch_size=4", "training.steps_per_epoch=1"]
    cfg = load_config(os.path.join(CONFIGS, "pfn_tfds.yaml"), overrides)
    for s in cfg["data"]["samples"]:
        s["tfds"] = "top_tagging/reference"
    summary = train(cfg, run_dir=str(tmp_path / "run"), verbose=0)
    assert summary["train_jets_seen"] == 4 and np.isfinite(summary["last_epoch"]["val_loss"])
    assert [s.split for s in split_specs(cfg)["validation"]] == ["validation", "validation"]
