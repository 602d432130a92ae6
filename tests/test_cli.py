from __future__ import annotations

import importlib.util
import json
import os

import pytest

from hepflow.cli.main import main


def test_inspect_lists_samples(jet_dir, tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"- {{name: top, files: '{jet_dir}/top_*.h5', keys: {{x: x, mass: mass}}, label: 1}}\n")
    assert main(["inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "top: label=1 rate=1.0 rows=2000 files=2" in out
    assert "(8, 4)" in out and "float32" in out


def test_inspect_reports_bad_input_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"- {{name: a, files: '{tmp_path}/none_*.h5', keys: [x]}}\n")
    assert main(["inspect", str(cfg)]) == 2
    assert "hepflow: error: Sample 'a': the glob pattern matches no file" in capsys.readouterr().err


def test_demo_runs_the_tagger_slice(pythia_jets_dir, tmp_path, capsys):
    import shutil

    shutil.copytree(pythia_jets_dir, tmp_path / "d" / "top_tagging")  # the same 240 jets the demo would make
    assert main(["demo", "--data-dir", str(tmp_path / "d"), "--jets", "240", "--epochs", "1",
                 "--run-root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "(already there)" in out  # resumed: nothing regenerated
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"cnn", "bdt", "cut_based"}
    for row in summary.values():
        assert 0 <= row["auc"] <= 1 and set(row) == {"auc", "rejection_at_0.3"}
    assert (tmp_path / "runs" / "report" / "roc.png").is_file()
    assert (tmp_path / "runs" / "cnn" / "model.keras").is_file()
    assert (tmp_path / "runs" / "models" / "cnn" / "1" / "saved_model.pb").is_file()
    if importlib.util.find_spec("onnxruntime"):  # make installs the [onnx] extra
        assert (tmp_path / "runs" / "models" / "cnn" / "1" / "onnx" / "serving_default.onnx").is_file()


def test_train_and_evaluate_commands(pythia_jets_dir, tmp_path, capsys):
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "top_tagging", "pfn.yaml")
    run = str(tmp_path / "pfn")
    assert main(["train", cfg, "--run-dir", run, "--set", f"data.dir={pythia_jets_dir}", "--set", "training.epochs=1",
                 "--set", "training.batch_size=16"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params"] > 10_000
    assert main(["evaluate", run, "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert list(json.loads(out.strip().splitlines()[-1])) == ["pfn"]
    with pytest.raises(SystemExit, match="--ensemble must look like"):
        main(["evaluate", run, "--ensemble", "pfn"])
    assert os.path.isfile(os.path.join(run, "evaluation", "roc.png"))
    assert main(["train", cfg, "--run-dir", run]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_generate_jets_refuses_a_malformed_process(tmp_path):

    from hepflow.cli.main import main

    with pytest.raises(SystemExit, match="--process must look like qcd=30000"):
        main(["generate", "jets", "--out", str(tmp_path), "--process", "gluino"])
    with pytest.raises(ValueError, match="counts must name processes"):
        main(["generate", "jets", "--out", str(tmp_path), "--process", "stop=10"])
