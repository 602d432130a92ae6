"""Small fake-data helpers shared by tests, tools and users."""
from __future__ import annotations

from hepflow.testing.jets import write_jet_files

__all__ = ["write_jet_files"]
