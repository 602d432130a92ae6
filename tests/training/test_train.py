"""``train`` and ``evaluate_runs`` on real Pythia jets: every example config, reports, alignment, errors."""
from __future__ import annotations

import glob
import json
import os

import h5py
import keras
import numpy as np
import pytest

from hepflow.errors import ConfigError, DataError, RunError
from hepflow.evaluation.reporters import standard_reporters
from hepflow.evaluation.runs import evaluate_runs
from hepflow.runs import score_specs
from hepflow.training import train
from hepflow.runs import build_transform, load_config, RUN_FILES, split_specs

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "top_tagging", "*.yaml")))
QUICK = ["training.epochs=1", "training.steps_per_epoch=2", "training.batch_size=8", "training.cache=null"]


def quick(data_dir):
    return QUICK + [f"data.dir={data_dir}"]


@pytest.fixture(scope="module")
def runs(pythia_jets_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ("deeptop_cnn", "high_level_dnn"):
        cfg = os.path.join(os.path.dirname(CONFIGS[0]), f"{name}.yaml")
        out[name] = train(cfg, run_dir=str(root / name), overrides=quick(pythia_jets_dir)
                          + ["training.steps_per_epoch=6", "training.epochs=2"], verbose=0)["run_dir"]
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_trains_through_the_pipeline_and_reloads(path, pythia_jets_dir, tmp_path):
    summary = train(path, run_dir=str(tmp_path / "run"), overrides=quick(pythia_jets_dir), verbose=0,
                    reporters=standard_reporters())
    for name in RUN_FILES + ("best.keras",):
        assert (tmp_path / "run" / name).is_file(), name
    assert summary["epochs"] == 1 and summary["train_jets_seen"] == 16 and summary["params"] > 1000
    assert np.isfinite(summary["last_epoch"]["loss"]) and np.isfinite(summary["last_epoch"]["val_loss"])
    assert glob.glob(str(tmp_path / "run" / "tb" / "train" / "events.out.tfevents.*"))
    assert (tmp_path / "run" / "validation" / "roc.png").is_file()  # the final model's ROC, also in tb/validation
    assert glob.glob(str(tmp_path / "run" / "tb" / "validation" / "events.out.tfevents.*"))
    cfg = load_config(str(tmp_path / "run" / "config.yaml"))
    assert cfg["training"]["steps_per_epoch"] == 2 and cfg["data"]["dir"] == str(pythia_jets_dir)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    ids, labels, scores = score_specs(model, split_specs(cfg)["test"], transform=build_transform(cfg), progress=False)
    again = keras.saving.load_model(tmp_path / "run" / "model.keras")
    _, _, scores_again = score_specs(again, split_specs(cfg)["test"], transform=build_transform(cfg), progress=False)
    np.testing.assert_array_equal(scores, scores_again)
    assert len(scores) == 24 and set(labels) == {0, 1}  # one 12-jet test file per class


def test_scores_are_matched_to_jets_by_record(runs):
    """Scores from the pipeline equal the model applied to rows read directly with h5py."""
    import tensorflow as tf

    cfg = load_config(os.path.join(runs["deeptop_cnn"], "config.yaml"))
    model = keras.saving.load_model(os.path.join(runs["deeptop_cnn"], "model.keras"))
    test = split_specs(cfg)["test"]
    ids, labels, scores = score_specs(model, test, transform=build_transform(cfg), batch_size=5, progress=False)
    for sample, spec in enumerate(test):
        for f, path in enumerate(spec.files):
            with h5py.File(path, "r") as h5:
                c, want_label = h5["constituents"][...], h5["label"][...]
            image = build_transform(cfg)({"constituents": tf.constant(c)})["image"]
            direct = model({"image": image}, training=False).numpy()[:, 0]
            rows = (ids[:, 0] == sample) & (ids[:, 1] == f)
            np.testing.assert_array_equal(ids[rows, 2], np.arange(len(c)))
            np.testing.assert_allclose(scores[rows], direct, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(labels[rows], want_label)


def test_evaluate_runs_writes_one_report_with_baselines(runs, tmp_path):
    table = evaluate_runs([runs["deeptop_cnn"], runs["high_level_dnn"]], out_dir=str(tmp_path / "report"),
                          progress=False)
    assert list(table) == ["deeptop_cnn", "high_level_dnn", "bdt", "cut_based"]
    for name, row in table.items():
        assert 0 <= row["auc"] <= 1, name
    # mass and τ32 separate real top and QCD jets, even with 192 training jets
    assert table["bdt"]["auc"] > 0.75 and table["cut_based"]["auc"] > 0.7
    assert table["deeptop_cnn"]["params"] == 216_481 and table["deeptop_cnn"]["train_seconds"] > 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["test"] == {"test_jets": 24, "test_signal": 12}
    assert set(report["taggers"]) == set(table)
    for png in ("roc.png", "sculpting.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000
    assert glob.glob(str(tmp_path / "report" / "tb" / "events.out.tfevents.*"))
    assert "cut_based" in (tmp_path / "report" / "report.txt").read_text()


def test_the_bdt_seed_does_not_follow_the_runs(runs, tmp_path, monkeypatch):
    import hepflow.evaluation.runs as runs_module

    seeds = []
    real = runs_module.bdt_tagger

    def recording(*args, seed, **kwargs):
        seeds.append(seed)
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(runs_module, "bdt_tagger", recording)
    first = evaluate_runs([runs["high_level_dnn"], runs["deeptop_cnn"]], out_dir=str(tmp_path / "a"), progress=False)
    again = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "b"), progress=False, baseline_seed=1)
    other = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "c"), progress=False, baseline_seed=11)
    assert seeds == [1, 1, 11]
    for name, a, b in (("bdt", first, again), ("cut_based", first, other)):  # the cuts have no seed
        assert a[name].keys() == b[name].keys()
        np.testing.assert_array_equal([a[name][k] for k in a[name]], [b[name][k] for k in a[name]])


def test_an_ensemble_scores_the_mean_of_its_members(runs, tmp_path):
    from sklearn.metrics import roc_auc_score

    members = ["deeptop_cnn", "high_level_dnn"]
    table = evaluate_runs([runs[m] for m in members], out_dir=str(tmp_path / "report"), baselines=False,
                          ensembles={"both": members}, progress=False)
    scores = []
    for m in members:
        cfg = load_config(os.path.join(runs[m], "config.yaml"))
        model = keras.saving.load_model(os.path.join(runs[m], "model.keras"))
        _, labels, s = score_specs(model, split_specs(cfg)["test"], transform=build_transform(cfg), progress=False)
        scores.append(s)
    assert table["both"]["auc"] == pytest.approx(roc_auc_score(labels, np.mean(scores, axis=0)), abs=1e-9)
    assert table["both"]["members"] == members
    assert table["both"]["params"] == table["deeptop_cnn"]["params"] + table["high_level_dnn"]["params"]
    for bad in ({"both": ["deeptop_cnn"]}, {"both": ["deeptop_cnn", "pfn"]}, {"deeptop_cnn": members}):
        with pytest.raises(ConfigError, match="Received"):
            evaluate_runs([runs[m] for m in members], out_dir=str(tmp_path / "r"), baselines=False,
                          ensembles=bad, progress=False)


def test_runs_with_other_test_files_cannot_share_a_report(runs, pythia_jets_dir, tmp_path):
    other = train(os.path.join(os.path.dirname(CONFIGS[0]), "efn.yaml"), run_dir=str(tmp_path / "efn"),
                  overrides=quick(pythia_jets_dir) + ["data.split.test=0.2"], verbose=0)
    with pytest.raises(DataError, match="other test files"):
        evaluate_runs([runs["deeptop_cnn"], other["run_dir"]], out_dir=str(tmp_path / "r"), progress=False)
    with pytest.raises(RunError, match="not a finished run"):
        evaluate_runs([str(tmp_path)], progress=False)


def test_evaluate_on_a_test_directory_scores_its_files_and_refuses_training_files(runs, tmp_path):
    """--test-dir: copies of the test files score as the test split; copies of training files are refused."""
    import shutil

    cfg = load_config(os.path.join(runs["deeptop_cnn"], "config.yaml"))
    split = split_specs(cfg)
    test_dir = tmp_path / "more_test_jets"
    test_dir.mkdir()
    for spec in split["test"]:  # each test file twice: the same jets, twice as many
        for path in spec.files:
            for copy in (1, 2):
                shutil.copy(path, test_dir / f"{spec.name}_9000{copy}.h5")
    own = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "own"), baselines=False, progress=False)
    moved = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "moved"), baselines=False,
                          test_dir=str(test_dir), progress=False)
    assert moved["deeptop_cnn"]["auc"] == pytest.approx(own["deeptop_cnn"]["auc"], abs=1e-12)
    assert json.loads((tmp_path / "moved" / "report.json").read_text())["test"] == {"test_jets": 48, "test_signal": 24}
    # a chunk the run trained on, under a new name (as when the test sample is generated with the same seed)
    shutil.copy(split["train"][0].files[3], test_dir / "qcd_99999.h5")
    with pytest.raises(DataError, match=r"trained or validated on.*qcd_99999\.h5"):
        evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "r"), test_dir=str(test_dir), progress=False)
    for f in test_dir.glob("top_*.h5"):
        f.unlink()
    with pytest.raises(DataError, match=r"Sample 'top'.*matches no file"):
        evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "r"), test_dir=str(test_dir), progress=False)
    with pytest.raises(DataError, match="test directory does not exist"):
        evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "r"), test_dir=str(tmp_path / "nope"),
                      progress=False)


def _rows_copy(src, dst, rows: slice) -> None:
    """A copy of an HDF5 sample file holding only ``rows`` of every dataset."""
    import h5py

    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for key, ds in a.items():
            b.create_dataset(key, data=ds[rows])
        b.attrs.update(dict(a.attrs))


def test_evaluate_on_several_test_directories_scores_them_as_one_sample(runs, tmp_path):
    """--test-dir A --test-dir B: the halves of the test split in two folders score as the whole split."""
    import shutil

    cfg = load_config(os.path.join(runs["deeptop_cnn"], "config.yaml"))
    halves = [tmp_path / "first_half", tmp_path / "second_half"]
    for d, rows in zip(halves, (slice(0, 5), slice(5, None))):
        d.mkdir()
        for spec in split_specs(cfg)["test"]:
            (path,) = spec.files
            _rows_copy(path, d / f"{spec.name}_90000.h5", rows)
    own = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "own"), baselines=False, progress=False)
    both = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "both"), baselines=False,
                         test_dir=[str(d) for d in halves], progress=False)
    assert both["deeptop_cnn"]["auc"] == pytest.approx(own["deeptop_cnn"]["auc"], abs=1e-12)
    assert json.loads((tmp_path / "both" / "report.json").read_text())["test"] == {"test_jets": 24, "test_signal": 12}
    one = evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "one"), baselines=False,
                        test_dir=[str(halves[0])], progress=False)
    assert json.loads((tmp_path / "one" / "report.json").read_text())["test"] == {"test_jets": 10, "test_signal": 5}
    # the same file in two folders would count its jets twice
    shutil.copy(halves[0] / "qcd_90000.h5", halves[1] / "qcd_90001.h5")
    with pytest.raises(DataError, match=r"Sample 'qcd'.*second_half.*count\s+twice.*qcd_90001\.h5"):
        evaluate_runs([runs["deeptop_cnn"]], out_dir=str(tmp_path / "r"), test_dir=[str(d) for d in halves],
                      progress=False)


def test_finished_runs_are_not_overwritten(runs):
    cfg = os.path.join(runs["deeptop_cnn"], "config.yaml")
    with pytest.raises(RunError, match="already holds a finished run"):
        train(cfg, run_dir=runs["deeptop_cnn"], verbose=0)


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


def test_train_never_deletes_what_it_did_not_write(pythia_jets_dir, tmp_path):
    """A run directory holding foreign files, an interrupted run, a started run: nothing removed without overwrite."""
    cfg = os.path.join(os.path.dirname(CONFIGS[0]), "high_level_dnn.yaml")
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    (run / "plots").mkdir()
    (run / "plots" / "mine.png").write_bytes(b"png")
    # an interrupted run: hepflow's files and a backup, beside the user's files
    (run / "config.yaml").write_text("name: x\n")
    (run / "history.csv").write_text("epoch,loss\n0,0.5\n")
    (run / "backup").mkdir()
    (run / "backup" / "position.json").write_text("{}")
    (run / "tb").mkdir()
    before = {p: (run / p).read_bytes() for p in _listing(run)}
    # a bad config or bad data fails before the run directory is touched
    with pytest.raises(ConfigError):
        train(cfg, run_dir=str(run), overrides=quick(pythia_jets_dir) + ["training.epoch=2"], verbose=0, overwrite=True)
    with pytest.raises(DataError):
        train(cfg, run_dir=str(run), overrides=quick(tmp_path / "nowhere"), verbose=0, overwrite=True)
    # rerunning train (not --resume) on an interrupted run points to resume and keeps its backup
    with pytest.raises(RunError, match=r"interrupted run; continue it with `hepflow train --resume"):
        train(cfg, run_dir=str(run), overrides=quick(pythia_jets_dir), verbose=0)
    assert {p: (run / p).read_bytes() for p in _listing(run)} == before
    # a started run without a backup is refused too
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text("name: x\n")
    with pytest.raises(RunError, match=r"files of an earlier run .*config.yaml.*--overwrite"):
        train(cfg, run_dir=str(started), overrides=quick(pythia_jets_dir), verbose=0)
    assert (started / "config.yaml").read_text() == "name: x\n"
    # --overwrite replaces hepflow's entries only
    train(cfg, run_dir=str(run), overrides=quick(pythia_jets_dir), verbose=0, overwrite=True)
    assert (run / "notes.txt").read_text() == "my notes" and (run / "plots" / "mine.png").read_bytes() == b"png"
    assert (run / "backup" / "position.json").read_text() != "{}" and (run / "model.keras").is_file()  # new run
    assert "high_level_dnn" in (run / "config.yaml").read_text()
    # a folder with only foreign files takes a new run beside them
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.h5").write_bytes(b"keep")
    train(cfg, run_dir=str(other), overrides=quick(pythia_jets_dir), verbose=0)
    assert (other / "data.h5").read_bytes() == b"keep" and (other / "model.keras").is_file()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../up", "a\\b", ".hidden"])
def test_run_names_that_leave_the_runs_folder_are_refused(name, pythia_jets_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = os.path.join(os.path.dirname(CONFIGS[0]), "high_level_dnn.yaml")
    with pytest.raises(ConfigError, match="`name` must be a non-empty string without path separators"):
        train(cfg, overrides=quick(pythia_jets_dir) + [f"name={name!r}"], verbose=0)
    assert os.listdir(tmp_path) == []


def test_missing_model_inputs_are_named(pythia_jets_dir, tmp_path):
    path = os.path.join(os.path.dirname(CONFIGS[0]), "high_level_dnn.yaml")
    with pytest.raises(ConfigError, match=r"needs inputs .*missing \['tau21', 'tau32'\]"):
        train(path, run_dir=str(tmp_path / "r"), overrides=quick(pythia_jets_dir) + ["transform=[]"], verbose=0)


@pytest.mark.slow  # `make test-slow` installs the [peers] extra first (make install-peers)
def test_energyflow_peer_trains_on_the_same_batches_and_joins_the_report(pythia_jets_dir, tmp_path):
    pytest.importorskip("energyflow")
    pfn = train(os.path.join(os.path.dirname(CONFIGS[0]), "pfn.yaml"), run_dir=str(tmp_path / "pfn"),
                overrides=quick(pythia_jets_dir), verbose=0)
    from hepflow.studies.peers import evaluate_with_peers

    table = evaluate_with_peers([pfn["run_dir"]], ["energyflow_pfn"], baselines=False, progress=False)
    assert list(table) == ["pfn", "energyflow_pfn"]
    # same architecture (Φ 100-100-256, F 100-100-100, 2-class softmax vs our sigmoid head)
    assert table["energyflow_pfn"]["params"] == pfn["params"] + 101
    assert table["energyflow_pfn"]["train_jets_seen"] == pfn["train_jets_seen"] == 16
    assert 0 <= table["energyflow_pfn"]["auc"] <= 1


def test_mixed_precision_computes_in_float16_and_leaves_the_global_policy(pythia_jets_dir, tmp_path):
    cfg = os.path.join(os.path.dirname(CONFIGS[0]), "high_level_dnn.yaml")
    summary = train(cfg, run_dir=str(tmp_path / "run"), overrides=quick(pythia_jets_dir) + ["training.mixed_precision=true"],
                    verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"  # other models in this process are unaffected
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][0]
    assert dense.compute_dtype == "float16" and dense.kernel.dtype == "float32"
    assert np.isfinite(summary["last_epoch"]["loss"])
