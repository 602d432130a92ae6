"""The cluster recipes: TF_CONFIG from Slurm and Kubernetes variables, and the Slurm script run on localhost."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest
import yaml

from hepflow.errors import ConfigError
from hepflow.training.cluster import expand_nodelist, expand_tasks_per_node, tf_config_from_env

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SBATCH = os.path.join(ROOT, "cluster", "slurm", "train.sbatch")
K8S = os.path.join(ROOT, "cluster", "kubernetes")
CONFIG = os.path.join(ROOT, "configs", "top_tagging", "high_level_dnn.yaml")

# srun as Slurm runs it on one node: the command once per task, with the task's variables
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i SLURM_LOCALID=$i "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


def test_slurm_host_lists_expand_as_slurm_writes_them():
    assert expand_nodelist("gpu[01-03,07],cpu5") == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]
    assert expand_nodelist("rack[1-2]-n[8-9]") == ["rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"]
    assert expand_tasks_per_node("2(x3),1", 4) == [2, 2, 2, 1]
    for bad in ("gpu[1-2", "gpu[3-1]", "gpu[a-b]"):
        with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST"):
            expand_nodelist(bad)
    with pytest.raises(ConfigError, match="covers 2 hosts but SLURM_JOB_NODELIST names 3"):
        expand_tasks_per_node("1(x2)", 3)


def test_tf_config_from_slurm_and_kubernetes_variables():
    env = {"SLURM_JOB_NODELIST": "gpu[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_PROCID": "3"}
    cfg = json.loads(tf_config_from_env("slurm", env=env, port=4000))
    assert cfg == {"cluster": {"worker": ["gpu1:4000", "gpu1:4001", "gpu2:4000", "gpu2:4001"]},
                   "task": {"type": "worker", "index": 3}}
    env = {"HEPFLOW_JOB": "train", "HEPFLOW_SERVICE": "hepflow", "HEPFLOW_REPLICAS": "3", "JOB_COMPLETION_INDEX": "2"}
    cfg = json.loads(tf_config_from_env("kubernetes", env=env))
    assert cfg["cluster"]["worker"] == ["train-0.hepflow:2222", "train-1.hepflow:2222", "train-2.hepflow:2222"]
    assert cfg["task"] == {"type": "worker", "index": 2}
    with pytest.raises(ConfigError, match=r"\$SLURM_PROCID is not set"):
        tf_config_from_env("slurm", env={"SLURM_JOB_NODELIST": "a"})
    with pytest.raises(ConfigError, match="index 5 is outside the 2 workers"):
        tf_config_from_env("slurm", env={"SLURM_JOB_NODELIST": "a,b", "SLURM_PROCID": "5"})


def test_kubernetes_manifests_agree_with_the_tf_config_they_compute():
    docs = {}
    for name in sorted(os.listdir(K8S)):
        with open(os.path.join(K8S, name)) as f:
            for doc in yaml.safe_load_all(f):
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    job = docs[("Job", "hepflow-train")]
    spec = job["spec"]
    pod = spec["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"] if "value" in e}
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == int(env["HEPFLOW_REPLICAS"])
    assert env["HEPFLOW_JOB"] == "hepflow-train" and pod["subdomain"] == env["HEPFLOW_SERVICE"]
    service = docs[("Service", env["HEPFLOW_SERVICE"])]
    assert service["spec"]["clusterIP"] == "None"  # headless: pods resolve as <job>-<index>.<service>
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    port = service["spec"]["ports"][0]["port"]
    command = " ".join(pod["containers"][0]["command"])
    assert "cluster tf-config --scheduler kubernetes" in command and f"--port {port}" in command
    assert "training.strategy=multi_worker" in command
    cfg = json.loads(tf_config_from_env("kubernetes", env={**env, "JOB_COMPLETION_INDEX": "1"}, port=port))
    assert cfg["cluster"]["worker"][1] == f"hepflow-train-1.{env['HEPFLOW_SERVICE']}:{port}"
    dispatcher = docs[("Deployment", "hepflow-dispatcher")]["spec"]["template"]["spec"]["containers"][0]
    workers = docs[("Deployment", "hepflow-data-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert "data-service dispatcher" in " ".join(dispatcher["command"])
    assert "hepflow-dispatcher:5050" in " ".join(workers["command"])


def _two_free_consecutive_ports() -> int:
    for base in range(23000, 24000, 7):
        socks = []
        try:
            for p in (base, base + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("localhost", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.slow
def test_slurm_script_trains_with_two_tasks_on_localhost(pythia_jets_dir, tmp_path):
    """The batch script itself, with an srun that starts its tasks on this machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod((bin_dir / "srun").stat().st_mode | stat.S_IEXEC)
    (bin_dir / "hepflow").write_text(f"#!/bin/bash\nexec {sys.executable} -m hepflow.cli.main \"$@\"\n")
    (bin_dir / "hepflow").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="localhost",
               SLURM_TASKS_PER_NODE="2", SLURM_NTASKS="2", HEPFLOW_PORT=str(_two_free_consecutive_ports()),
               TF_CPP_MIN_LOG_LEVEL="2")
    over = ["training.batch_size=16", "training.steps_per_epoch=10", "training.cache=null", "training.epochs=1",
            "training.early_stopping=null", "training.validation_steps=2", f"data.dir={pythia_jets_dir}"]
    run = tmp_path / "run"
    proc = subprocess.run(["bash", SBATCH, CONFIG, str(run), *sum((["--set", o] for o in over), [])], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run / "summary.json") as f:
        summary = json.load(f)
    assert summary["strategy"] == "MultiWorkerMirroredStrategy" and summary["replicas"] == 2
    assert summary["train_jets_seen"] == 10 * 16 and (run / "model.keras").is_file()
