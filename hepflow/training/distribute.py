"""Which ``tf.distribute`` strategy a run uses: one device, all local GPUs, or several workers.

``make_strategy("auto")`` picks:

* ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker;
* ``MirroredStrategy`` over all local GPUs when there are two or more;
* otherwise the default strategy (one device: the GPU when there is one, else the CPU).

``"default"``, ``"mirrored"`` and ``"multi_worker"`` ask for one explicitly. ``"mirrored"``
without GPUs mirrors over the logical CPU devices (two or more of them come from
``tf.config.set_logical_device_configuration``), which is how the tests exercise it.

Batch sizes in hepflow configs are **global**: ``training.batch_size`` rows per step over all
replicas together, ``batch_size / num_replicas_in_sync`` on each. So a config gives the same
optimisation whatever the number of devices, and the learning rate needs no rescaling.

``MultiWorkerMirroredStrategy`` must be created before TensorFlow starts any other work in
the process (it configures the collective ops of the eager context), so create the strategy
first: :func:`hepflow.training.train` does.
"""
from __future__ import annotations

import json
import os

import socket
import tensorflow as tf

from hepflow.errors import ConfigError

__all__ = ["STRATEGIES", "make_strategy", "strategy_name", "tf_config_workers", "is_chief", "free_ports",
           "localhost_tf_configs"]

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def tf_config_workers() -> int:
    """Number of workers ``TF_CONFIG`` names (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"TF_CONFIG must be JSON with a 'cluster' and a 'task'. Received: {raw[:200]!r}") from e
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """Whether this process writes the run directory: the chief, or worker 0 without a chief."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0


def make_strategy(name: str | tf.distribute.Strategy = "auto") -> tf.distribute.Strategy:
    """Creates the strategy ``name`` names (see the module docstring).

    Args:
        name: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"``, or a strategy
            (returned as is).

    Raises:
        DataError: an unknown name, or ``"multi_worker"`` without a ``TF_CONFIG`` cluster.
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    workers = tf_config_workers()
    if name == "auto":
        name = ("multi_worker" if workers > 1
                else "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        if workers < 1:
            raise ConfigError("strategy='multi_worker' needs TF_CONFIG naming the cluster's workers and this "
                              "process's task. Received: TF_CONFIG unset")
        # all gradients of a step in as few collectives as possible: each costs network round trips
        options = tf.distribute.experimental.CommunicationOptions(bytes_per_pack=32 * 1024 * 1024)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public name of a strategy: ``DefaultStrategy``, ``MirroredStrategy``, ``MultiWorkerMirroredStrategy``."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "DefaultStrategy"
    return type(strategy).__name__


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on localhost right now (for workers, a dispatcher, ...)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def localhost_tf_configs(workers: int) -> list[str]:
    """The ``TF_CONFIG`` value of each of ``workers`` worker processes on this machine (free ports)."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(workers)]
