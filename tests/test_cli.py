from __future__ import annotations

import importlib.util
import json
import os
import re

import h5py

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
    assert main(["demo", "--data-dir", str(tmp_path / "d"), "--jets", "240", "--test-top", "20", "--test-qcd", "40",
                 "--epochs", "1", "--particle-epochs", "1", "--run-root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "(already there)" in out  # resumed: the training jets were not regenerated
    manifest = json.loads((tmp_path / "d" / "top_tagging_test" / "manifest.json").read_text())
    assert manifest["counts"] == {"top": 20, "qcd": 40} and manifest["seed"] == 2  # independent test sample
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"cnn", "particlenet_lite", "ensemble", "bdt", "cut_based"}
    for row in summary.values():
        assert 0 <= row["auc"] <= 1 and set(row) - {"rejection_at_0.5_lower_bound"} == {"auc", "rejection_at_0.5"}
        assert row["rejection_at_0.5"] is not None and row["rejection_at_0.5"] > 0  # a bound, never inf or null
    headline = out.strip().splitlines()[-2]
    assert headline.startswith("ensemble minus bdt: AUC ") and "cut_based: AUC" in headline
    report = json.loads((tmp_path / "runs" / "report" / "report.json").read_text())
    assert report["test"] == {"test_jets": 60, "test_signal": 20}
    for name in ("cnn", "particlenet_lite", "ensemble"):
        assert set(report["taggers"][name]["paired"]["bdt"]) == {"auc", "rejection_at_0.3", "rejection_at_0.5"}
    assert report["taggers"]["ensemble"]["members"] == ["cnn", "particlenet_lite"]
    assert (tmp_path / "runs" / "report" / "roc.png").is_file()
    assert (tmp_path / "runs" / "cnn" / "model.keras").is_file()
    assert (tmp_path / "runs" / "particlenet_lite" / "model.keras").is_file()
    assert (tmp_path / "runs" / "models" / "ensemble" / "1" / "saved_model.pb").is_file()
    if importlib.util.find_spec("onnxruntime"):  # make installs the [onnx] extra
        assert (tmp_path / "runs" / "models" / "ensemble" / "1" / "onnx" / "serving_default.onnx").is_file()


def test_train_and_evaluate_commands(pythia_jets_dir, tmp_path, capsys):
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "top_tagging", "pfn.yaml")
    run = str(tmp_path / "pfn")
    assert main(["train", cfg, "--run-dir", run, "--set", f"data.dir={pythia_jets_dir}", "--set", "training.epochs=1",
                 "--set", "training.batch_size=16"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params"] > 10_000
    assert main(["evaluate", run, "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert list(json.loads(out.strip().splitlines()[-1])) == ["pfn"]
    assert main(["evaluate", run, "--ensemble", "pfn"]) == 2
    assert "--ensemble must look like" in capsys.readouterr().err
    assert os.path.isfile(os.path.join(run, "evaluation", "roc.png"))
    assert main(["train", cfg, "--run-dir", run]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def _cli(argv, capsys):
    """Exit status and stderr of ``hepflow ARGV`` run in this process."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _bad_cases(tmp_path, jet_dir):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: t\nmodel: {name: pfn\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"name: t\ndata: {{dir: {jet_dir}, samples: [{{name: a, files: 'qcd_*.h5', keys: [x]}}]}}\n"
                    "model: {name: deeptop_cnn}\ntraining: {epoch: 5}\n")
    out = str(tmp_path / "out")
    return [
        (["generate", "top-tagging", "--out", out, "--jets", "-5"], "--jets: expected a positive integer"),
        (["generate", "top-tagging", "--out", out, "--jets", "10", "--workers", "0"], "--workers: expected a positive"),
        (["generate", "jets", "--out", out, "--process", "qcd=10", "--chunk-jets", "0"], "--chunk-jets: expected"),
        (["generate", "jets", "--out", out, "--process", "bogus=10"], "counts must name processes"),
        (["generate", "jets", "--out", out, "--process", "gluino"], "--process must look like qcd=30000"),
        (["generate", "calo-showers", "--out", out, "--showers", "10", "--emin", "100", "--emax", "1"],
         "0 < Emin < Emax"),
        (["generate", "calo-showers", "--out", out, "--showers", "10", "--emin", "-1"], "--emin: expected a positive"),
        (["train", str(bad_yaml)], "bad.yaml: not valid YAML at line"),
        (["train", str(typo)], "unknown key 'epoch' in `training` (did you mean 'epochs'?)"),
        (["train"], "give a CONFIG, or --resume RUN_DIR"),
        (["train", "--resume", str(tmp_path / "nothing")], "resume needs the directory of a started run"),
        (["train", str(tmp_path / "missing.yaml")], "Config file not found"),
        (["inspect", str(tmp_path / "missing.yaml")], "file not found"),
        (["inspect", str(bad_yaml)], "not valid YAML at line"),
        (["evaluate", str(tmp_path / "norun")], "Config file not found"),
        (["export", str(tmp_path / "norun"), out], "is not a finished run"),
        (["predict", "--model", out, "--input", str(jet_dir / "qcd_0.h5"), "--output", str(tmp_path / "no/dir/s.h5")],
         "output folder"),
        (["predict", "--model", out, "--input", str(tmp_path / "none.h5"), "--output", str(tmp_path / "s.h5")],
         "Input file not found"),
        (["scan", str(tmp_path / "missing.yaml")], "Cannot read the scan file"),
        (["cache", "clear", "--dir", str(tmp_path)], "name the caches to remove"),
        (["data-service", "worker"], "--dispatcher HOST:PORT is required"),
        (["study", "anomaly", "--epochs", "0"], "--epochs: expected a positive integer"),
        (["datasets", "build", "nope"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ]


def test_every_subcommand_reports_bad_arguments_in_one_line(jet_dir, tmp_path, capsys):
    for argv, phrase in _bad_cases(tmp_path, jet_dir):
        rc, err = _cli(argv, capsys)
        assert rc == 2, (argv, rc, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert phrase in err, (argv, err)
    assert not (tmp_path / "out").exists()  # nothing was generated or written


def test_debug_shows_the_traceback(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [\n")
    plain = subprocess.run([sys.executable, "-m", "hepflow.cli.main", "train", str(bad)], capture_output=True,
                           text=True, timeout=120)
    # TensorFlow's C++ start-up log (absl, before hepflow runs) aside, the error is one line
    ours = [line for line in plain.stderr.strip().splitlines()
            if not re.match(r"^([IWE]\d{4} |WARNING: All log messages|To enable the following)", line)]
    assert plain.returncode == 2 and len(ours) == 1 and ours[0].startswith("hepflow: error:"), plain.stderr
    debug = subprocess.run([sys.executable, "-m", "hepflow.cli.main", "train", str(bad), "--debug"],
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_lartpc_generate_reco_show_and_quality(tmp_path, capsys):
    out = tmp_path / "lartpc"
    assert main(["generate", "lartpc", "--out", str(out), "--topology", "muon=2", "--chunk-events", "1",
                 "--workers", "1"]) == 0
    assert "2 muon; this run simulated 2 events" in capsys.readouterr().out
    assert main(["reco", "show", "lartpc", "--png", str(tmp_path / "graph.png")]) == 0
    text = capsys.readouterr().out
    assert "deconvolve_Y [tf]: filtered_Y -> deconvolved_Y" in text and (tmp_path / "graph.png").is_file()
    assert main(["reco", "quality", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["events"] == 2 and result["Y"]["efficiency"] > 0.9 and result["Y"]["true_hits"] > 50
    assert main(["generate", "lartpc", "--out", str(out), "--topology", "tau=2"]) == 2
    assert "topologies of" in capsys.readouterr().err


def test_lartpc_configs_train_and_export_as_one_saved_model(tmp_path, capsys):
    """configs/lartpc/*.yaml train through the pipeline's reconstruction on generated events, and
    ``hepflow reco export`` joins the chain and both runs' networks into one SavedModel."""
    import tensorflow as tf

    data = tmp_path / "lartpc"
    assert main(["generate", "lartpc", "--out", str(data), "--topology", "numu_cc=3", "--topology", "nue_cc=3",
                 "--topology", "nc_pi0=3", "--chunk-events", "1", "--workers", "1"]) == 0
    configs = os.path.join(os.path.dirname(__file__), "..", "configs", "lartpc")
    quick = ["--set", f"data.dir={data}", "--set", "training.epochs=1", "--set", "training.steps_per_epoch=1",
             "--set", "training.batch_size=3", "--set", "training.cache=null"]
    for name, run in (("event_cnn", "ev"), ("segmentation_unet", "seg")):
        assert main(["train", os.path.join(configs, f"{name}.yaml"), "--run-dir", str(tmp_path / run)] + quick) == 0
    capsys.readouterr()
    out = tmp_path / "export"
    assert main(["reco", "export", str(out), "--event-class", str(tmp_path / "ev"),
                 "--segmentation", str(tmp_path / "seg")]) == 0
    assert "with event_class and segmentation" in capsys.readouterr().out
    with h5py.File(sorted(data.glob("nue_cc_*.h5"))[0], "r") as f:
        adc = f["adc"][:1]
    got = tf.saved_model.load(str(out)).signatures["serving_default"](adc=tf.constant(adc))
    assert got["event_class"].shape == (1, 3) and got["pixel_class"].shape == (1, 256, 128, 3)
    assert int(got["n_hits"][0]) > 0
    assert main(["reco", "export", str(out), "--event-class", str(tmp_path / "ev")]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
