#!/usr/bin/env python
"""Benchmark: top-tagging jet generation (Pythia 8 + FastJet + detector + τN) with 1 and 2 workers.

Prints a table and, as its last line, JSON with ``jets_per_s`` (2 workers) and
``scaling_2_vs_1`` (goal ≥ 1.8 on 2 cores). ``--quick`` runs in under two minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

from hepflow.physics.pythia_jets import JetSettings, generate_top_tagging


def rate(n_jets: int, workers: int, chunk_jets: int, settings: JetSettings) -> float:
    with tempfile.TemporaryDirectory() as d:
        m = generate_top_tagging(d, n_jets=n_jets, workers=workers, chunk_jets=chunk_jets, seed=7,
                                 settings=settings, progress=False)
    return m["generated_this_run"]["jets_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="80 jets per run (under two minutes)")
    ap.add_argument("--jets", type=int, default=None, help="jets per run (default 400)")
    ap.add_argument("--no-mpi", action="store_true", help="switch multi-parton interactions off")
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
    print(json.dumps({"jets_per_s": round(two, 2), "jets_per_s_1_worker": round(one, 2),
                      "scaling_2_vs_1": round(two / one, 3), "jets": n}))


if __name__ == "__main__":
    main()
