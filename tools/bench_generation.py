#!/usr/bin/env python
"""Benchmark: top-tagging jet generation (Pythia 8 + FastJet + detector + τN) with 1 and 2 workers.

Prints a table and, as its last line, JSON with ``jets_per_s`` (2 workers) and
``scaling_2_vs_1`` (goal ≥ 1.8 on 2 cores). ``--quick`` runs in under two minutes.

With ``--beam`` it also builds the tfds ``top_tagging`` config through its Apache Beam engine
(the DirectRunner with 1 and 2 worker processes, ``direct_running_mode=multi_processing``) and
reports jets/s of the whole build (generation, serialisation and tfds' shuffle and write) beside
the process pool's: JSON ``beam_scaling_2_vs_1`` and ``beam_vs_pool``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from hepflow.physics.pythia_jets import JetSettings, generate_top_tagging


def rate(n_jets: int, workers: int, chunk_jets: int, settings: JetSettings) -> float:
    with tempfile.TemporaryDirectory() as d:
        m = generate_top_tagging(d, n_jets=n_jets, workers=workers, chunk_jets=chunk_jets, seed=7,
                                 settings=settings, progress=False)
    return m["generated_this_run"]["jets_per_s"]


def beam_rate(n_jets: int, workers: int, mpi: bool) -> float:
    """Jets/s of a tfds build of ``top_tagging`` through the Beam engine with ``workers`` DirectRunner processes."""
    import tensorflow_datasets as tfds  # optional extra [tfds]
    from apache_beam.options.pipeline_options import PipelineOptions  # optional extra [tfds]

    from hepflow.datasets import TopTagging, TopTaggingConfig

    cfg = TopTaggingConfig(name="bench", n_train=n_jets, n_validation=2, n_test=2, engine="beam", mpi=mpi)
    options = PipelineOptions(direct_num_workers=workers, direct_running_mode="multi_processing")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        TopTagging(config=cfg, data_dir=d).download_and_prepare(
            download_config=tfds.download.DownloadConfig(beam_options=options))
        return (n_jets + 4) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="80 jets per run (under two minutes)")
    ap.add_argument("--jets", type=int, default=None, help="jets per run (default 400)")
    ap.add_argument("--no-mpi", action="store_true", help="switch multi-parton interactions off")
    ap.add_argument("--beam", action="store_true", help="also build the tfds config with the Beam engine, 1 and 2 workers")
    args = ap.parse_args()
    n = args.jets or (80 if args.quick else 400)
    settings = JetSettings(mpi=not args.no_mpi)
    chunk = max(1, n // 8)  # ≥ 4 chunks per class so that two workers share the work evenly
    one = rate(n, 1, chunk, settings)
    two = rate(n, 2, chunk, settings)
    print(f"\ntop-tagging generation, {n} jets per run (half top, half QCD), chunks of {chunk}, "
          f"MPI {'off' if args.no_mpi else 'on'}, detector simple; {os.cpu_count()} cores")
    print(f"{'workers':>8s} {'jets/s':>10s}")
    print(f"{1:8d} {one:10.1f}\n{2:8d} {two:10.1f}")
    out = {"jets_per_s": round(two, 2), "jets_per_s_1_worker": round(one, 2), "scaling_2_vs_1": round(two / one, 3),
           "jets": n}
    if args.beam:
        b1, b2 = beam_rate(n, 1, not args.no_mpi), beam_rate(n, 2, not args.no_mpi)
        print(f"tfds build through Apache Beam (DirectRunner, multi_processing), {n} + 4 jets:")
        print(f"{1:8d} {b1:10.1f}\n{2:8d} {b2:10.1f}")
        out.update(beam_jets_per_s=round(b2, 2), beam_jets_per_s_1_worker=round(b1, 2),
                   beam_scaling_2_vs_1=round(b2 / b1, 3), beam_vs_pool=round(b2 / two, 3))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
