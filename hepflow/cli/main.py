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
