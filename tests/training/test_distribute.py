"""Distributed training and kill-and-resume, each in real processes on real Pythia jets.

* mirrored: two logical CPU devices (``MirroredStrategy``) vs one device, same seeded config;
* multi-worker: two localhost worker processes with ``TF_CONFIG`` (``MultiWorkerMirroredStrategy``);
* resume: ``kill -9`` of ``hepflow train`` mid-run, then ``hepflow train --resume``, vs an
  uninterrupted run; and SIGTERM, which saves the state before stopping.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from hepflow.training.distribute import free_ports, localhost_tf_configs

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "top_tagging", "high_level_dnn.yaml")
HEPFLOW = [sys.executable, "-m", "hepflow.cli.main"]

# batch 16 over 20 steps, no dropout (replicas draw their own dropout masks), no early stopping
SMALL = ["training.batch_size=16", "training.steps_per_epoch=20", "training.cache=null",
         "training.early_stopping=null", "model.args.dropout=0.0", "training.validation_steps=2"]


def overrides(data_dir, *extra):
    return SMALL + [f"data.dir={data_dir}", *extra]


def history(run_dir) -> list[dict[str, float]]:
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def weights(run_dir) -> list[np.ndarray]:
    """The weights stored in a run's model.keras, read with h5py (no TensorFlow in the test process needed)."""
    import zipfile

    out = []
    with zipfile.ZipFile(os.path.join(run_dir, "model.keras")) as z, z.open("model.weights.h5") as f:
        with h5py.File(f, "r") as h:
            h.visititems(lambda name, obj: out.append(obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


SCRIPT = """
import sys, json, tensorflow as tf
n = int(sys.argv[1])
if n > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
from hepflow.training import train
s = train(sys.argv[2], run_dir=sys.argv[3], overrides=sys.argv[5:], strategy=sys.argv[4], verbose=0)
print("SUMMARY", json.dumps(s))
"""


def run_script(devices, strategy, run_dir, over, env=None):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(devices), CONFIG, str(run_dir), strategy, *over],
                          capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


@pytest.fixture(scope="module")
def single(pythia_jets_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single") / "run"
    return run_dir, run_script(1, "default", run_dir, overrides(pythia_jets_dir, "training.epochs=2"))


def test_mirrored_on_two_devices_reaches_the_single_device_loss(single, pythia_jets_dir, tmp_path):
    one_dir, one = single
    two = run_script(2, "mirrored", tmp_path / "run", overrides(pythia_jets_dir, "training.epochs=2"))
    assert two["strategy"] == "MirroredStrategy" and two["replicas"] == 2 and one["replicas"] == 1
    assert two["train_jets_seen"] == one["train_jets_seen"] == 2 * 20 * 16
    # Same global batches, gradients all-reduced, batch norm synchronized over the replicas: the
    # same optimisation up to the order of floating-point sums (measured: 4e-7 relative).
    for a, b in zip(history(one_dir), history(tmp_path / "run")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4), (a, b)


@pytest.mark.slow
def test_two_localhost_workers_train_in_sync_to_the_single_device_loss(single, pythia_jets_dir, tmp_path):
    one_dir, one = single
    procs = []
    for tf_config in localhost_tf_configs(2):
        env = dict(os.environ, TF_CONFIG=tf_config)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "1", CONFIG, str(tmp_path / "run"), "auto",
             *overrides(pythia_jets_dir, "training.epochs=2")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=280) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summaries = [json.loads([ln for ln in o.splitlines() if ln.startswith("SUMMARY ")][-1][8:]) for o, _ in outs]
    assert [s["strategy"] for s in summaries] == ["MultiWorkerMirroredStrategy"] * 2
    assert summaries[0]["replicas"] == 2
    # both workers end with the same model (synchronous all-reduce); only the chief wrote the run
    assert summaries[0]["last_epoch"]["loss"] == summaries[1]["last_epoch"]["loss"]
    assert sorted(os.listdir(tmp_path)) == ["run"]
    # Each worker reads its own shard of the same files (other rows per step than one device's
    # global batches), so the seeded runs agree within a few per cent, not exactly.
    for a, b in zip(history(one_dir), history(tmp_path / "run")):
        assert abs(a["loss"] - b["loss"]) < 0.1 * a["loss"], (a, b)


def start_training(config_over, run_dir):
    return subprocess.Popen([*HEPFLOW, "train", CONFIG, "--run-dir", str(run_dir), *sum((["--set", o]
                            for o in config_over), [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_backup(run_dir, proc, *, epoch=None, timeout=240):
    position = os.path.join(run_dir, "backup", "position.json")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1][-3000:])
        if os.path.exists(position):
            with open(position) as f:
                pos = json.load(f)
            if epoch is None or pos["epoch"] >= epoch:
                return pos
        time.sleep(0.05)
    raise AssertionError("no backup appeared")


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(single, pythia_jets_dir, tmp_path):
    over = overrides(pythia_jets_dir, "training.epochs=3", "training.backup_steps=5")
    reference = tmp_path / "reference"
    proc = subprocess.run([*HEPFLOW, "train", CONFIG, "--run-dir", str(reference),
                           *sum((["--set", o] for o in over), [])], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = tmp_path / "killed"
    proc = start_training(over, run)
    pos = wait_for_backup(run, proc, epoch=1)  # killed somewhere in the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not (run / "model.keras").exists()
    resumed = subprocess.run([*HEPFLOW, "train", "--resume", str(run)], capture_output=True, text=True, timeout=280)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pos["epoch"] >= 1
    for a, b in zip(weights(reference), weights(run)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ref_h, run_h = history(reference), history(run)
    assert [r["epoch"] for r in run_h] == [0, 1, 2]  # no epoch lost or repeated in the log
    for a, b in zip(ref_h, run_h):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (ref_h, run_h)
    env = json.loads((run / "environment.json").read_text())
    assert len(env["resumed"]) == 1


@pytest.mark.slow
def test_sigterm_saves_the_state_mid_epoch_and_resume_completes(pythia_jets_dir, tmp_path):
    over = overrides(pythia_jets_dir, "training.epochs=2", "training.steps_per_epoch=400", "training.backup_steps=40")
    run = tmp_path / "stopped"
    proc = start_training(over, run)
    first = wait_for_backup(run, proc)  # training is under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"continue with: hepflow train --resume {run}" in err
    pos = json.loads((run / "backup" / "position.json").read_text())
    assert (pos["epoch"], pos["step"]) >= (first["epoch"], first["step"])
    assert pos["epoch"] == 0 and 0 < pos["step"] < 400  # saved where it stopped, mid-epoch
    resumed = subprocess.run([*HEPFLOW, "train", "--resume", str(run)], capture_output=True, text=True, timeout=280)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["epoch"] for r in history(run)] == [0, 1]


@pytest.mark.slow
def test_training_on_a_data_service_started_by_the_command_line(pythia_jets_dir, tmp_path):
    """`hepflow data-service dispatcher` + two `hepflow data-service worker`s, then `train` with service=."""
    port = free_ports(1)[0]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([*HEPFLOW, "data-service", "dispatcher", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)]
    try:
        assert f"dispatcher at grpc://localhost:{port}" in procs[0].stdout.readline()
        for _ in range(2):
            procs.append(subprocess.Popen([*HEPFLOW, "data-service", "worker", "--dispatcher", f"localhost:{port}"],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
            assert "worker serving" in procs[-1].stdout.readline()
        over = overrides(pythia_jets_dir, "training.epochs=2", f"training.service=grpc://localhost:{port}")
        summary = run_script(1, "default", tmp_path / "run", over)
        assert summary["epochs"] == 2 and summary["train_jets_seen"] == 2 * 20 * 16
        assert all(np.isfinite(r["loss"]) for r in history(tmp_path / "run"))
    finally:
        for p in procs:
            p.terminate()
            p.communicate(timeout=30)


def test_runs_list_shows_finished_and_interrupted_runs(single, tmp_path):
    """`hepflow runs list`: statuses and best metrics read from the run directories."""
    import shutil

    from hepflow.runs import format_runs, list_runs

    one_dir, one = single
    shutil.copytree(one_dir, tmp_path / "a" / "finished")
    shutil.copytree(one_dir, tmp_path / "b" / "interrupted")
    os.remove(tmp_path / "b" / "interrupted" / "model.keras")
    runs = list_runs(str(tmp_path), sort_by="best_val_loss")
    assert [r["status"] for r in runs] == ["finished", "interrupted"] or \
        [r["status"] for r in runs] == ["interrupted", "finished"]
    best = min(r["val_loss"] for r in history(one_dir))
    assert all(r["best_val_loss"] == pytest.approx(best) and r["epochs"] == 2 for r in runs)
    assert all(r["model"] == "high_level_dnn" and r["strategy"] == "DefaultStrategy" for r in runs)
    table = format_runs(runs)
    assert "interrupted" in table and "high_level_dnn" in table and table.count("\n") == 2
    out = subprocess.run([*HEPFLOW, "runs", "list", str(tmp_path), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {os.path.basename(r["run_dir"]) for r in json.loads(out.stdout.strip().splitlines()[-1])} == \
        {"finished", "interrupted"}


@pytest.mark.slow
def test_scan_runs_trials_in_parallel_resumes_and_retries_failures_once(pythia_jets_dir, tmp_path):
    """A 2×2 grid (one value fails on purpose), two at a time; rerunning skips what finished."""
    from hepflow.training.scan import run_scan

    scan = {"config": os.path.abspath(CONFIG), "out": str(tmp_path / "scan"), "method": "grid", "parallel": 2,
            "metric": "val_auc",
            "overrides": overrides(pythia_jets_dir, "training.epochs=1", "training.steps_per_epoch=5"),
            "space": {"optimizer.learning_rate": [0.01, 0.001], "model.args.hidden": [[16], "not-a-list"]}}
    path = tmp_path / "scan.yaml"
    path.write_text(json.dumps(scan))
    rows = run_scan(str(path), progress=False)
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "finished"]
    bad = [r for r in rows if r["status"] == "failed"]
    assert len(ok) == 2 and all(r["model.args.hidden"] == [16] for r in ok)
    assert len(bad) == 2 and all(r["attempts"] == 2 for r in bad)  # retried once
    assert ok[0]["val_auc"] >= ok[1]["val_auc"]  # sorted by the metric, best first
    assert rows[:2] == ok  # failed trials last
    text = (tmp_path / "scan" / "results.md").read_text()
    assert "val_auc" in text and text.count("| trial_") == 4
    assert (tmp_path / "scan" / "results.csv").is_file()
    finished = {r["trial"]: os.path.getmtime(tmp_path / "scan" / r["trial"] / "model.keras") for r in ok}
    again = run_scan(str(path), progress=False)  # resumable: finished trials are not rerun
    assert {r["trial"] for r in again if r["status"] == "finished"} == set(finished)
    for name, mtime in finished.items():
        assert os.path.getmtime(tmp_path / "scan" / name / "model.keras") == mtime
    assert all(r["attempts"] == 0 for r in again if r["status"] == "finished")
