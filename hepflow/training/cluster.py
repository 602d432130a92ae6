"""``TF_CONFIG`` from a batch scheduler's environment: Slurm and Kubernetes.

``MultiWorkerMirroredStrategy`` learns the cluster from ``TF_CONFIG``: every worker's
``host:port`` and this process's index. Schedulers describe the same cluster in their own
variables; :func:`tf_config_from_env` translates them, and ``hepflow cluster tf-config`` prints
the result for a batch script (``export TF_CONFIG=$(hepflow cluster tf-config --scheduler slurm)``).
Recipes that use it: ``cluster/slurm/train.sbatch`` and ``cluster/kubernetes/`` (docs/training.md).

* **Slurm**: one training process per task. Hosts from ``SLURM_JOB_NODELIST`` (the compact form,
  e.g. ``gpu[01-03,07],cpu5``), tasks per host from ``SLURM_TASKS_PER_NODE`` (e.g. ``2(x3),1``),
  this task from ``SLURM_PROCID``; tasks are laid out block-wise as Slurm's default distribution
  does, and the k-th task on a host listens on ``port + k``.
* **Kubernetes**: an indexed Job (``completionMode: Indexed``) behind a headless Service; pod ``i``
  is ``<job>-<i>.<service>`` and learns ``i`` from ``JOB_COMPLETION_INDEX``.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from hepflow.errors import ConfigError

__all__ = ["expand_nodelist", "expand_tasks_per_node", "tf_config_from_env", "SCHEDULERS"]

SCHEDULERS = ("slurm", "kubernetes")
DEFAULT_PORT = 2222


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if depth < 0 or depth > 1:
            raise ConfigError(f"SLURM_JOB_NODELIST: unbalanced brackets. Received: {text!r}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ConfigError(f"SLURM_JOB_NODELIST: unbalanced brackets. Received: {text!r}")
    return parts + [cur]


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compact host list → host names: ``"gpu[01-03,07],cpu5"`` → gpu01, gpu02, gpu03, gpu07, cpu5.

    Raises:
        ConfigError: a list Slurm would not write (unbalanced brackets, a reversed range).
    """
    hosts: list[str] = []
    for part in _split_top_level(nodelist.strip()):
        names = [""]
        for text, ranges in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", part):
            options = [text]
            if ranges:
                options = []
                for r in ranges.split(","):
                    lo, _, hi = r.partition("-")
                    if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
                        raise ConfigError(f"SLURM_JOB_NODELIST: bad range {r!r} in {part!r}. Received: {nodelist!r}")
                    options += [f"{text}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1)]
            names = [n + o for n in names for o in options]
        hosts += [n for n in names if n]
    if not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST names no host. Received: {nodelist!r}")
    return hosts


def expand_tasks_per_node(spec: str, n_hosts: int) -> list[int]:
    """``SLURM_TASKS_PER_NODE`` → tasks on each host: ``"2(x3),1"`` → [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise ConfigError(f"SLURM_TASKS_PER_NODE: cannot read {part!r}. Received: {spec!r}")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if len(counts) != n_hosts:
        raise ConfigError(f"SLURM_TASKS_PER_NODE covers {len(counts)} hosts but SLURM_JOB_NODELIST names {n_hosts}. "
                          f"Received: {spec!r}")
    return counts


def _need(env: Mapping[str, str], name: str, scheduler: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"hepflow cluster tf-config --scheduler {scheduler}: ${name} is not set (run it inside the "
                          f"job's tasks). Received: {name} unset")
    return value


def tf_config_from_env(scheduler: str, *, env: Mapping[str, str] | None = None, port: int = DEFAULT_PORT,
                       job: str | None = None, service: str | None = None, replicas: int | None = None) -> str:
    """This process's ``TF_CONFIG`` (JSON) from the scheduler's environment variables.

    Args:
        scheduler: ``"slurm"`` or ``"kubernetes"``.
        env: The environment to read (default ``os.environ``).
        port: The first worker port on each host. Default 2222.
        job: Kubernetes: the indexed Job's name (pods are ``<job>-<index>``); default ``$HEPFLOW_JOB``.
        service: Kubernetes: the headless Service's name; default ``$HEPFLOW_SERVICE``.
        replicas: Kubernetes: the Job's ``completions``; default ``$HEPFLOW_REPLICAS``.

    Returns:
        ``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}`` as JSON.

    Raises:
        ConfigError: an unknown scheduler or a variable the scheduler should have set.
    """
    env = os.environ if env is None else env
    if scheduler == "slurm":
        hosts = expand_nodelist(_need(env, "SLURM_JOB_NODELIST", scheduler))
        spec = env.get("SLURM_TASKS_PER_NODE")
        per_host = expand_tasks_per_node(spec, len(hosts)) if spec else [1] * len(hosts)
        workers = [f"{h}:{port + k}" for h, n in zip(hosts, per_host) for k in range(n)]
        index = int(_need(env, "SLURM_PROCID", scheduler))
    elif scheduler == "kubernetes":
        job = job or _need(env, "HEPFLOW_JOB", scheduler)
        service = service or _need(env, "HEPFLOW_SERVICE", scheduler)
        replicas = int(replicas or _need(env, "HEPFLOW_REPLICAS", scheduler))
        workers = [f"{job}-{i}.{service}:{port}" for i in range(replicas)]
        index = int(_need(env, "JOB_COMPLETION_INDEX", scheduler))
    else:
        raise ConfigError(f"scheduler must be one of {SCHEDULERS}. Received: scheduler={scheduler!r}")
    if not 0 <= index < len(workers):
        raise ConfigError(f"This task's index {index} is outside the {len(workers)} workers of the job. "
                          f"Received: index={index}")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
