"""Training: configs, ``train`` (config in, run directory out)."""
from __future__ import annotations

from hepflow.training.config import load_config, split_specs
from hepflow.training.train import train

__all__ = ["load_config", "split_specs", "train"]
