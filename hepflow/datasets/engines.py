"""How the generated tfds configs make their chunks: a local process pool, or an Apache Beam pipeline.

With ``engine="beam"`` each chunk job (process, index, jets, Pythia seed: the list
:func:`hepflow.physics.pythia_jets.chunk_jobs` gives, the same the process pool runs) is one element
of a Beam pipeline that generates the chunk in memory and yields its examples, keyed by the chunk
file name the pool would have written, so that both engines give the same examples under the
same keys.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow_datasets as tfds

from hepflow.physics.chunks import chunk_path

__all__ = ["ENGINES", "check_engine", "chunk_name", "beam_chunk_examples"]

ENGINES = ("processes", "beam")


def check_engine(config: Any) -> None:
    """Raises ``ValueError`` unless ``config.engine`` is one of :data:`ENGINES`."""
    if config.engine not in ENGINES:
        raise ValueError(f"{type(config).__name__}.engine must be 'processes' or 'beam'. "
                         f"Received: engine={config.engine!r}")


def chunk_name(process: str, index: int) -> str:
    """The file name the process pool gives chunk ``index`` of ``process`` (the examples' key prefix)."""
    return chunk_path("", process, index)


def beam_chunk_examples(split: str, jobs: Sequence[tuple], examples_of_chunk: Callable, **kwargs: Any):
    """A Beam transform for one split: an element per chunk job, ``examples_of_chunk(job, **kwargs)`` its examples.

    ``examples_of_chunk`` must be a module-level function: Beam pickles it to its workers.
    """
    beam = tfds.core.lazy_imports.apache_beam
    return f"Chunks{split}" >> beam.Create(list(jobs)) | f"Generate{split}" >> beam.FlatMap(examples_of_chunk,
                                                                                         **kwargs)
