"""The ``hepflow`` command: thin wrappers that parse arguments and call the library."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from hepflow.cli.demo import run_demo

    run_demo(data_dir=args.data_dir, jets_per_class=args.jets, epochs=args.epochs)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from hepflow.physics.pythia_jets import JetSettings, generate_top_tagging

    settings = JetSettings(detector=args.detector, mpi=not args.no_mpi, hadronization=not args.no_hadronization)
    m = generate_top_tagging(args.out, n_jets=args.jets, workers=args.workers, chunk_jets=args.chunk_jets,
                             seed=args.seed, settings=settings, file_format=args.format)
    run = m["generated_this_run"]
    rate = f", {run['jets_per_s']:.1f} jets/s" if run["jets_per_s"] else " (everything was already there)"
    print(f"{args.out}: {m['counts']['top']} top + {m['counts']['qcd']} QCD jets; this run generated "
          f"{run['jets']} jets in {run['seconds']:.1f} s{rate}; manifest: {args.out}/manifest.json")
    if args.report:
        from hepflow.physics.report import top_tagging_report

        top_tagging_report(args.out)
    return 0


def _datasets_build(args: argparse.Namespace) -> int:
    import hepflow.datasets  # noqa: F401  (registers the builders)
    import tensorflow_datasets as tfds

    builder = tfds.builder(f"{args.name}/{args.config}", data_dir=args.data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
    print(f"built {builder.info.full_name} in {builder.data_dir}: "
          + ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items()))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from hepflow.data import load_specs
    from hepflow.data.readers import inspect_sample

    for i, spec in enumerate(load_specs(args.specs)):
        lay = inspect_sample(spec, i)
        print(f"{spec.name}: label={spec.label} rate={spec.rate} rows={lay.n_rows} files={len(lay.files)}"
              + (f" selection={spec.selection!r}" if spec.selection else ""))
        for name, feat in lay.features.items():
            print(f"  {name:16s} {feat.path:24s} {str(feat.row_shape):16s} {feat.dtype}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hepflow`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="hepflow", description="Deep learning for high-energy physics.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="generate jet files, stream them through a mixed pipeline, train")
    p.add_argument("--data-dir", default="demo_data", help="where the generated files go (reused)")
    p.add_argument("--jets", type=int, default=100_000, help="jets per class")
    p.add_argument("--epochs", type=int, default=3, help="pipeline epochs to time")
    p.set_defaults(func=_demo)
    p = sub.add_parser("generate", help="generate physics data")
    gen = p.add_subparsers(dest="dataset", required=True)
    p = gen.add_parser("top-tagging", help="top and QCD jets with Pythia 8 + FastJet (needs [pythia])")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--jets", type=int, required=True, help="total jets, half top, half QCD")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-jets", type=int, default=1000, help="jets per chunk file")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.add_argument("--detector", choices=["simple", "none"], default="simple", help="detector response")
    p.add_argument("--no-mpi", action="store_true", help="switch off multi-parton interactions (faster)")
    p.add_argument("--no-hadronization", action="store_true", help="partons as constituents (fast, unphysical)")
    p.add_argument("--format", choices=["native", "reference"], default="native",
                   help="native: every feature, fastest to read; reference: the published pandas layout")
    p.add_argument("--report", action="store_true", help="print and plot (PNG) mass, τ32 and pT per class")
    p.set_defaults(func=_generate)
    p = sub.add_parser("datasets", help="tfds datasets of hepflow")
    ds_sub = p.add_subparsers(dest="action", required=True)
    p = ds_sub.add_parser("build", help="build a tfds dataset offline (no apache-beam needed)")
    p.add_argument("name", choices=["top_tagging"], help="dataset")
    p.add_argument("--config", default="generated", help="builder config (generated, reference)")
    p.add_argument("--data-dir", default=None, help="tfds data dir (default ~/tensorflow_datasets)")
    p.add_argument("--manual-dir", default=None, help="folder with the published files (reference config)")
    p.set_defaults(func=_datasets_build)
    p = sub.add_parser("inspect", help="validate sample specs (YAML) and list their rows and features")
    p.add_argument("specs", help="YAML file of sample specs")
    p.set_defaults(func=_inspect)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:  # a clear one-line error for the command line
        from hepflow.data import DataError

        if isinstance(e, DataError):
            print(f"hepflow: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
