"""Public community file formats, read (and written) byte for byte as published."""
from __future__ import annotations

from hepflow.data.formats.calogan import CALOGAN_SHAPES, read_calogan, write_calogan
from hepflow.data.formats.challenge_events import read_challenge, write_challenge
from hepflow.data.formats.top_tagging import read_reference, reference_columns, write_reference

__all__ = ["read_reference", "reference_columns", "write_reference", "CALOGAN_SHAPES", "read_calogan",
           "write_calogan", "read_challenge", "write_challenge"]
