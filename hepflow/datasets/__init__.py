"""tfds builders of hepflow's datasets; importing this module registers them with tfds.

``import hepflow.datasets`` then ``tfds.load("top_tagging/generated")`` or ``tfds.load("calo_showers/eplus")``.
Needs the ``[tfds]`` extra.
"""
from __future__ import annotations

from hepflow.datasets.calo_showers import Builder as CaloShowers, CaloShowersConfig
from hepflow.datasets.jet_classes import Builder as JetClasses, JetClassesConfig
from hepflow.datasets.lhc_events import Builder as LhcEvents, LhcEventsConfig
from hepflow.datasets.top_tagging import Builder as TopTagging, TopTaggingConfig

__all__ = ["TopTagging", "TopTaggingConfig", "CaloShowers", "CaloShowersConfig", "JetClasses", "JetClassesConfig", "LhcEvents",
           "LhcEventsConfig"]
