"""tfds builders of hepflow's datasets; importing this module registers them with tfds.

``import hepflow.datasets`` then ``tfds.load("top_tagging/generated")``.
Needs the ``[tfds]`` extra.
"""
from __future__ import annotations

from hepflow.datasets.top_tagging import Builder as TopTagging, TopTaggingConfig

__all__ = ["TopTagging", "TopTaggingConfig"]
