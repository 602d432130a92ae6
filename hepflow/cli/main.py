"""The ``hepflow`` command: thin wrappers that parse arguments and call the library.

Each subcommand imports what it needs inside its function, so that ``hepflow --help`` and
argument errors answer without importing TensorFlow (~3 s on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from hepflow.errors import ConfigError, DataError, HepflowError, carried_message

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with the house style: a bad argument is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0. Received: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0. Received: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number. Received: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number. Received: {text}")
    return value


def _one_line(e: BaseException) -> str | None:
    """The one-line message of a hepflow error, also when TensorFlow wrapped it in an op error mid-epoch."""
    if isinstance(e, HepflowError):
        return " ".join(str(e).split())
    if type(e).__module__.startswith("tensorflow"):
        text = str(e)
        carried = carried_message(text)
        if carried is not None:
            return carried
        if "holds NaN or Inf" in text:  # the service path's in-graph check
            return " ".join(text.splitlines()[0].split())
    return None


def _demo(args: argparse.Namespace) -> int:
    from hepflow.cli.demo import headline, run_demo
    from hepflow.evaluation.report import format_report

    table = run_demo(data_dir=args.data_dir, jets=args.jets, test_top=args.test_top, test_qcd=args.test_qcd,
                     epochs=args.epochs, particle_epochs=args.particle_epochs, workers=args.workers,
                     run_root=args.run_root)
    print(format_report(table))
    print(headline(table))
    print(json.dumps(summary_json(table, 0.5)))
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


def _process_counts(items: Sequence[str], command: str, example: str) -> dict[str, int]:
    """``--process NAME=N`` options → ``{NAME: N}``, refusing anything but a positive integer N."""
    counts = {}
    for item in items:
        name, sep, n = item.partition("=")
        if not sep or not n.isdigit() or int(n) <= 0:
            raise ConfigError(f"{command}: --process must look like {example}. Received: {item!r}")
        counts[name] = int(n)
    return counts


def _generate_jets(args: argparse.Namespace) -> int:
    import dataclasses

    from hepflow.physics.pythia_jets import ANOMALY_SETTINGS, JetSettings, generate_jets

    counts = _process_counts(args.process, "hepflow generate jets", "qcd=30000")
    base = ANOMALY_SETTINGS if args.preset == "anomaly" else JetSettings()
    if (args.pileup_mu is None) != (args.minbias_pool is None):
        raise ConfigError("hepflow generate jets: --pileup-mu and --minbias-pool go together. "
                          f"Received: --pileup-mu {args.pileup_mu}, --minbias-pool {args.minbias_pool}")
    settings = dataclasses.replace(base, detector=args.detector, mpi=not args.no_mpi, trees=args.trees,
                                   pileup_mu=args.pileup_mu, minbias_pool=args.minbias_pool)
    m = generate_jets(args.out, counts=counts, workers=args.workers, chunk_jets=args.chunk_jets, seed=args.seed,
                      settings=settings, dataset=args.preset)
    run = m["generated_this_run"]
    rate = f", {run['jets_per_s']:.1f} jets/s" if run["jets_per_s"] else " (everything was already there)"
    print(f"{args.out}: " + ", ".join(f"{n:,} {p}" for p, n in m["counts"].items())
          + f" jets; this run generated {run['jets']} jets in {run['seconds']:.1f} s{rate}")
    return 0


def _generate_events(args: argparse.Namespace) -> int:
    from hepflow.physics.events import EventSettings, generate_events

    counts = _process_counts(args.process, "hepflow generate events", "w=3000")
    m = generate_events(args.out, counts=counts, workers=args.workers, chunk_events=args.chunk_events, seed=args.seed,
                        settings=EventSettings(mpi=not args.no_mpi))
    run = m["generated_this_run"]
    rate = f", {run['events_per_s']:.1f} events/s" if run["events_per_s"] else " (everything was already there)"
    print(f"{args.out}: " + ", ".join(f"{v['events']:,} {p} (σ·ε = {v['rate_pb']:.3g} pb)"
                                      for p, v in m["processes"].items())
          + f"; this run generated {run['events']} events in {run['seconds']:.1f} s{rate}")
    return 0


def _generate_minbias(args: argparse.Namespace) -> int:
    from hepflow.physics.minbias import generate_minbias

    m = generate_minbias(args.out, n_events=args.events, workers=args.workers, chunk_events=args.chunk_events,
                         seed=args.seed)
    run = m["generated_this_run"]
    rate = f", {run['events_per_s']:.1f} events/s" if run["events_per_s"] else " (everything was already there)"
    print(f"{args.out}: {m['n_events']:,} minimum-bias events, {m['visible_particles_per_event']:.0f} visible "
          f"particles each on average; this run generated {run['events']} in {run['seconds']:.1f} s{rate}")
    return 0


def _study_anomaly(args: argparse.Namespace) -> int:
    from hepflow.studies.anomaly import format_study, run_anomaly_study

    report = run_anomaly_study(args.data, args.out, epochs=args.epochs, classifier_epochs=args.classifier_epochs,
                               steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                               adversary_weights=args.adversary_weights, verbose=2)
    print(format_study(report))
    print(f"report: {args.out}/report.md, plots: {args.out}/*.png, runs: {args.out}/runs")
    return 0


def _study_pileup(args: argparse.Namespace) -> int:
    from hepflow.evaluation.pileup import format_study, run_pileup_study

    report = run_pileup_study(args.data, args.out, pumml_run=args.pumml, tagger_runs=args.tagger,
                              validation_fraction=args.validation_fraction, test_fraction=args.test_fraction)
    print(format_study(report))
    print(f"report: {args.out}/report.md, plots: {args.out}/*.png, TensorBoard: {args.out}/tensorboard")
    return 0


def _study_events(args: argparse.Namespace) -> int:
    from hepflow.evaluation.events import evaluate_event_runs, format_events_report
    from hepflow.physics.events import SIGNALS

    report = evaluate_event_runs(args.run, data_dir=args.data, out_dir=args.out, signals=args.signal or SIGNALS,
                                 baselines=not args.no_baselines)
    print(format_events_report(report))
    print(f"report: {args.out}/report.md, plots: {args.out}/*.png, TensorBoard: {args.out}/tensorboard")
    return 0


def _generate_calo(args: argparse.Namespace) -> int:
    from hepflow.physics.calo_generate import generate_calo_showers

    m = generate_calo_showers(args.out, particles=args.particle or ["eplus", "gamma", "piplus"],
                              n_showers=args.showers, chunk_showers=args.chunk_showers, workers=args.workers,
                              seed=args.seed, energy_range=(args.emin, args.emax))
    run = m["generated_this_run"]
    rate = f", {run['showers_per_s']:,.0f} showers/s" if run["showers_per_s"] else " (everything was already there)"
    print(f"{args.out}: " + ", ".join(f"{n:,} {p}" for p, n in m["counts"].items())
          + f"; this run simulated {run['showers']:,} showers in {run['seconds']:.1f} s{rate}")
    return 0


def _generate_lartpc(args: argparse.Namespace) -> int:
    from hepflow.physics.lartpc import generate_lartpc

    named = _named_values(args.topology, "--topology", "numu_cc=200")
    if not all(v.isdigit() for v in named.values()):
        raise ConfigError(f"hepflow generate lartpc: --topology needs TOPOLOGY=N with N a positive integer. "
                          f"Received: {args.topology}")
    counts = {k: int(v) for k, v in named.items()}
    m = generate_lartpc(args.out, counts=counts, chunk_events=args.chunk_events, workers=args.workers, seed=args.seed)
    run = m["generated_this_run"]
    rate = f", {run['events_per_s']:.1f} events/s" if run["events_per_s"] else " (everything was already there)"
    print(f"{args.out}: " + ", ".join(f"{n:,} {p}" for p, n in m["counts"].items())
          + f"; this run simulated {run['events']:,} events in {run['seconds']:.1f} s{rate}")
    return 0


def _reco_show(args: argparse.Namespace) -> int:
    from hepflow.reco import GRAPHS

    graph = GRAPHS[args.graph]()
    print(graph.describe())
    if args.png:
        graph.plot(args.png)
        print(f"graph picture: {args.png}")
    if args.logdir:
        graph.log_graph(args.logdir)
        print(f"compiled graph in TensorBoard: tensorboard --logdir {args.logdir} (Graphs tab)")
    return 0


def _reco_quality(args: argparse.Namespace) -> int:
    from hepflow.reco.quality import format_quality, reco_quality

    result = reco_quality(os.path.join(args.data_dir, f"{args.topology}_*.h5"), batch_size=args.batch_size)
    print(format_quality(result))
    print(json.dumps(result))
    return 0


def _datasets_build(args: argparse.Namespace) -> int:
    import hepflow.datasets  # noqa: F401  (registers the builders)
    import tensorflow_datasets as tfds

    name = f"{args.name}/{args.config}" if args.config else args.name
    builder = tfds.builder(name, data_dir=args.data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
    print(f"built {builder.info.full_name} in {builder.data_dir}: "
          + ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items()))
    return 0


def _train(args: argparse.Namespace) -> int:
    from hepflow.evaluation.reporters import standard_reporters
    from hepflow.training import train

    if (args.config is None) == (args.resume is None):
        raise ConfigError("hepflow train: give a CONFIG, or --resume RUN_DIR (not both). "
                         f"Received: config={args.config!r}, resume={args.resume!r}")
    try:
        if args.resume:
            summary = train(run_dir=args.resume, resume=True, overrides=args.set, strategy=args.strategy,
                            reporters=standard_reporters())
        else:
            summary = train(args.config, run_dir=args.run_dir, overrides=args.set, overwrite=args.overwrite,
                            strategy=args.strategy, reporters=standard_reporters())
    except KeyboardInterrupt as e:
        from hepflow.runs import load_config

        run_dir = args.resume or args.run_dir or os.path.join("runs", load_config(args.config, args.set)["name"])
        print(f"\nhepflow train: stopped ({e}); continue with: hepflow train --resume {run_dir}", file=sys.stderr)
        return 130
    print(f"run: {summary['run_dir']} ({summary['params']:,} parameters, {summary['epochs']} epochs, "
          f"{summary['train_seconds']:.0f} s); evaluate with: hepflow evaluate {summary['run_dir']}")
    print(json.dumps(summary))
    return 0


def _offload(args: argparse.Namespace) -> int:
    if args.offload_command == "fit":  # the machine that runs this may have Keras but no TensorFlow
        from hepflow.training.offload_fit import fit

        fit(args.pack_dir, args.fit_dir, epochs=args.epochs, max_minutes=args.max_minutes)
        return 0
    from hepflow.training.offload import pack, unpack

    if args.offload_command == "pack":
        pack(args.config, args.pack_dir, overrides=args.set)
    else:
        unpack(args.pack_dir, args.fit_dir, args.run_dir)
    return 0


def _scan(args: argparse.Namespace) -> int:
    from hepflow.training.scan import run_scan

    rows = run_scan(args.scan_file)
    if rows:
        columns = list(rows[0])
        print("\t".join(columns))
        for r in rows:
            print("\t".join("—" if r[c] is None else f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c])
                            for c in columns))
    print(json.dumps({"trials": len(rows), "finished": sum(r["status"] == "finished" for r in rows),
                      "best": rows[0] if rows else None}))
    return 0 if all(r["status"] == "finished" for r in rows) else 1


def _runs(args: argparse.Namespace) -> int:
    from hepflow.runs import format_runs, list_runs

    runs = list_runs(args.root, sort_by=args.sort)
    if args.json:
        print(json.dumps(runs))
    elif not runs:
        print(f"no runs under {args.root}")
    else:
        print(format_runs(runs))
    return 0


def _cache(args: argparse.Namespace) -> int:
    import time

    from hepflow.data.cache import default_cache_dir, list_caches, remove_caches

    directory = args.dir or default_cache_dir()
    if args.cache_command == "clear":
        if not args.all and not args.names:
            raise ConfigError("hepflow cache clear: name the caches to remove (see hepflow cache list) or pass --all. "
                             "Received: nothing")
        removed = remove_caches(None if args.all else args.names, directory)
        print(f"removed {len(removed)} cache folder(s) from {directory}")
        return 0
    records = list_caches(directory)
    if not records:
        print(f"no pipeline caches in {directory}")
        return 0
    print(f"{'cache':<26}{'GB':>8}  {'modified':<17}samples")
    for r in records:
        samples = ", ".join(f"{k} ({v:,} rows)" for k, v in r["samples"].items()) or "none complete"
        busy = f"; being filled by pid {', '.join(map(str, r['writers']))}" if r["writers"] else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["modified"]))
        print(f"{r['name']:<26}{r['bytes'] / 1e9:>8.2f}  {when:<17}{samples}{busy}")
    print(f"total {sum(r['bytes'] for r in records) / 1e9:.2f} GB in {directory}")
    return 0


def _data_service(args: argparse.Namespace) -> int:
    from hepflow.data.service import start_dispatcher, start_worker

    if args.role == "dispatcher":
        server = start_dispatcher(port=args.port, work_dir=args.work_dir)
        print(f"tf.data service dispatcher at {server.target}; train with --set training.service={server.target}",
              flush=True)
    else:
        if not args.dispatcher:
            raise ConfigError("hepflow data-service worker: --dispatcher HOST:PORT is required. Received: none")
        server = start_worker(args.dispatcher, port=args.port)
        print(f"tf.data service worker serving {args.dispatcher}", flush=True)
    try:
        server.join()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from hepflow.training.cluster import tf_config_from_env

    print(tf_config_from_env(args.scheduler, port=args.port, job=args.job, service=args.service,
                             replicas=args.replicas))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from hepflow.evaluation.report import format_report
    from hepflow.evaluation.runs import evaluate_runs
    from hepflow.runs import load_config

    task = load_config(os.path.join(args.run_dirs[0], "config.yaml"))["training"]["task"] if len(args.run_dirs) == 1 \
        else "classification"
    if task == "generative":
        from hepflow.evaluation.generative import evaluate_generative

        result = evaluate_generative(args.run_dirs[0], out_dir=args.out)
        tables = result.get("samples", {"": result})
        for name, table in tables.items():
            worst = sorted(table["wasserstein"].items(), key=lambda kv: -kv[1])[:5]
            print(f"{name + ': ' if name else ''}{table['n']} test showers vs generated at the same energies")
            print(f"classifier AUC (0.5 = indistinguishable): shower shapes {table['classifier_auc_features']:.3f}, "
                  f"cells {table['classifier_auc_cells']:.3f}; Fréchet distance (shapes) {table['frechet']:.3f}")
            print("largest W1/σ: " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
        summary = {name: {k: v for k, v in table.items() if k != "wasserstein"} for name, table in tables.items()}
        print(json.dumps(summary.get("", summary)))
        return 0
    if task == "segmentation":
        from hepflow.evaluation.segmentation import evaluate_segmentation, format_segmentation

        result = evaluate_segmentation(args.run_dirs[0], out_dir=args.out, test_dir=args.test_dir)
        print(format_segmentation(result))
        print(f"report.json, confusion.png and TensorBoard logs (tb/) in {args.out or os.path.join(args.run_dirs[0], 'evaluation')}")
        print(json.dumps(result))
        return 0
    if task in ("anomaly", "proportions"):  # no truth labels in the config: name the signal files
        from hepflow.evaluation.anomaly_runs import evaluate_anomaly_run

        signals = _named_values(args.signal, "--signal", "gluino='data/anomaly/gluino_*.h5'")
        table = evaluate_anomaly_run(args.run_dirs[0], signals, out_dir=args.out, efficiencies=args.efficiencies)
        print(format_report(table, tuple(args.efficiencies)))
        print(json.dumps(table))
        return 0
    config = load_config(os.path.join(args.run_dirs[0], "config.yaml"))
    if task == "regression" and config["model"]["name"] == "pumml":  # pileup mitigation: jets against no-pileup jets
        from hepflow.evaluation.pileup import format_study, run_pileup_study

        data = [config["data"]["dir"]] + list(args.test_dir or [])
        split = config["data"]["split"]
        out = args.out or os.path.join(args.run_dirs[0], "evaluation")
        report = run_pileup_study(data, out, pumml_run=args.run_dirs[0], validation_fraction=split.get("validation", 0),
                                  test_fraction=split.get("test", 0))
        print(format_study(report))
        print(f"report.md, report.json, PNGs and TensorBoard logs in {out}")
        return 0
    if task == "regression":
        from hepflow.evaluation.regression import evaluate_regression

        table = evaluate_regression(args.run_dirs[0], out_dir=args.out)
        for name, fit in table.items():
            print(f"{name:20s} σ/E = {fit['a']:.3f}/√E ⊕ {fit['b']:.3f}/E ⊕ {fit['c']:.4f}; "
                  f"mean |response − 1| = {fit['mean_abs_response_bias']:.3f}")
        print(f"regression.json and resolution.png in {args.out or os.path.join(args.run_dirs[0], 'evaluation')}")
        print(json.dumps({n: {k: round(v, 4) for k, v in f.items()} for n, f in table.items()}))
        return 0

    labels = {json.dumps(s.get("label")) for s in load_config(os.path.join(args.run_dirs[0], "config.yaml"))["data"]["samples"]}
    if len(labels) > 2:  # a softmax over three or more classes: each run gets its own report
        from hepflow.evaluation.multiclass import evaluate_multiclass, format_multiclass

        if args.out is not None and len(args.run_dirs) > 1:
            raise ConfigError("hepflow evaluate: multi-class runs get one report each (RUN/evaluation); drop --out "
                              f"or pass one run. Received: {len(args.run_dirs)} runs, --out {args.out}")
        for run_dir in args.run_dirs:
            result = evaluate_multiclass(run_dir, out_dir=args.out, test_dir=args.test_dir,
                                         baselines=not args.no_baselines, baseline_seed=args.baseline_seed)
            print(f"== {run_dir}")
            print(format_multiclass(result))
            print(f"report.json, confusion.png, roc_one_vs_rest.png and TensorBoard logs (tb/) in "
                  f"{args.out or os.path.join(run_dir, 'evaluation')}")
            print(json.dumps(result))
        return 0
    efficiencies = tuple(args.efficiencies)
    if not efficiencies or not all(0 < e < 1 for e in efficiencies):
        raise ConfigError(f"hepflow evaluate: --efficiencies must lie in (0, 1). Received: {list(efficiencies)}")
    ensembles = {name: members.split(",") for name, members in
                 _named_values(args.ensemble, "--ensemble", "cnn_ensemble=run_a,run_b").items()}
    options = dict(out_dir=args.out, baselines=not args.no_baselines, efficiencies=efficiencies,
                   test_dir=args.test_dir, ensembles=ensembles, baseline_seed=args.baseline_seed)
    if args.peer:  # peers are trained here: a study, not an evaluation
        from hepflow.studies.peers import evaluate_with_peers

        table = evaluate_with_peers(args.run_dirs, args.peer, **options)
    else:
        table = evaluate_runs(args.run_dirs, **options)
    out = args.out or os.path.join(args.run_dirs[0], "evaluation")
    print(format_report(table, efficiencies, markdown=args.markdown))
    print(f"report, roc.png, sculpting.png and TensorBoard logs (tb/) in {out}")
    print(json.dumps(summary_json(table, efficiencies[0])))
    return 0


def _named_values(items: Sequence[str], flag: str, example: str) -> dict[str, str]:
    """``NAME=VALUE`` options of ``hepflow evaluate`` → ``{NAME: VALUE}``, refusing items without ``=``."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"hepflow evaluate: {flag} must look like {example}. Received: {bad}")
    return dict(item.partition("=")[::2] for item in items)


def summary_json(table: dict, efficiency: float = 0.3) -> dict:
    """The report's headline: tagger → ``{"auc", "rejection_at_<efficiency>"}``, rounded.

    Where no background passed, the rejection is the bound the test sample sets (its number of
    background jets) and ``rejection_at_<efficiency>_lower_bound`` is ``true``.
    """
    from hepflow.evaluation.report import json_safe

    keys = ("auc", f"rejection_at_{efficiency}")
    out = {}
    for name, row in table.items():
        out[name] = {k: round(float(row[k]), 4) for k in keys if k in row}
        if row.get(f"rejection_at_{efficiency}_lower_bound"):
            out[name][f"rejection_at_{efficiency}_lower_bound"] = True
    return json_safe(out)


def _export(args: argparse.Namespace) -> int:
    from hepflow.serving.from_run import export_ensemble, export_run

    if args.ensemble_name is not None:
        path = export_ensemble(args.run_dirs, args.out, name=args.ensemble_name, version=args.version, onnx=args.onnx)
        print(f"exported the mean of {len(args.run_dirs)} runs to {path}; inspect with: saved_model_cli show --dir {path} --all")
        if args.onnx:
            print(f"ONNX: {path}/onnx/serving_default.onnx (raw inputs), checked against the SavedModel with ONNX Runtime")
        return 0
    if len(args.run_dirs) > 1:
        raise ConfigError(f"hepflow export: several runs need --ensemble-name. Received: {args.run_dirs}")
    path = export_run(args.run_dirs[0], args.out, version=args.version, onnx=args.onnx)
    print(f"exported to {path}; inspect with: saved_model_cli show --dir {path} --all")
    if args.onnx:
        print(f"ONNX: {path}/onnx/serving_default.onnx (raw inputs), {path}/onnx/serve_features.onnx "
              "(model inputs); both checked against the SavedModel with ONNX Runtime")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hepflow.serving.predict import predict_file

    bad = [k for k in args.key if "=" not in k]
    if bad:
        raise ConfigError(f"hepflow predict: --key must look like INPUT=DATASET. Received: {bad}")
    keys = {name: (path.split(",") if "," in path else path) for name, path in (k.split("=", 1) for k in args.key)}
    n = predict_file(args.model, args.input, args.output, keys=keys or None, batch_size=args.batch_size,
                     sort_by=args.sort_by)
    print(f"{args.output}: {n:,} scores (dataset 'score', aligned with the rows of {args.input})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from hepflow.data import load_specs
    from hepflow.data.readers import inspect_sample
    from hepflow.data.sources.listing import describe_file

    if not os.path.isfile(args.specs):
        raise DataError(f"hepflow inspect: file not found: {args.specs}. Received: specs={args.specs!r}")
    if os.path.splitext(args.specs)[1].lower() not in (".yaml", ".yml"):
        print("\n".join(describe_file(args.specs)))
        return 0
    for i, spec in enumerate(load_specs(args.specs)):
        lay = inspect_sample(spec, i)
        fmt = "" if spec.format == "hdf5" else f"format={spec.format} "
        print(f"{spec.name}: {fmt}label={spec.label} rate={spec.rate} rows={lay.n_rows} files={len(lay.files)}"
              + (f" selection={spec.selection!r}" if spec.selection else ""))
        for name, feat in lay.features.items():
            print(f"  {name:16s} {feat.path:24s} {str(feat.row_shape):16s} {feat.dtype}")
    return 0


def _generate_jet_ntuples(args: argparse.Namespace) -> int:
    from hepflow.data.formats.ntuples import write_jet_folder

    if not os.path.isdir(args.src):
        raise DataError(f"hepflow generate jet-ntuples: folder not found: {args.src}. Received: --from {args.src!r}")
    try:
        paths = write_jet_folder(args.src, args.out, fmt=args.fmt, seed=args.seed)
    except ValueError as e:
        raise DataError(str(e)) from None
    print(f"{len(paths)} {args.fmt} files in {args.out}")
    return 0


def _reco_export(args: argparse.Namespace) -> int:
    from hepflow.serving.reco_export import export_lartpc_runs

    runs = {role: run for role, run in (("event_class", args.event_class), ("segmentation", args.segmentation)) if run}
    if not runs:
        raise ConfigError("hepflow reco export: give --event-class RUN, --segmentation RUN or both. Received: neither")
    if os.path.exists(args.out):
        raise ConfigError(f"hepflow reco export: {args.out} exists; exports are never overwritten. Received: {args.out!r}")
    path = export_lartpc_runs(args.out, runs)
    print(f"exported the LArTPC reconstruction with {' and '.join(runs)} to {path}; inspect with: "
          f"saved_model_cli show --dir {path} --all")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from hepflow.evaluation.explain import explain_run

    result = explain_run(args.run_dir, out_dir=args.out, n_jets=args.jets)
    print(f"{args.run_dir}: {result['kind']} maps of {result['jets']} test jets ({', '.join(result['classes'])}):")
    for path in result["pngs"]:
        print(f"  {path}")
    for name, per_input in (result.get("attribution") or {}).items():
        for inp, row in per_input.items():
            top = sorted(row["mean_abs_attribution"].items(), key=lambda kv: -kv[1])[:3]
            print(f"  {name} / {inp}: largest mean |attribution|: " + ", ".join(f"{k} {v:.3g}" for k, v in top))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from hepflow.data import load_specs
    from hepflow.data.convert import convert_specs

    if not os.path.isfile(args.specs):
        raise DataError(f"hepflow convert: file not found: {args.specs}. Received: specs={args.specs!r}")
    rows = convert_specs(load_specs(args.specs), args.out)
    for name, n in rows.items():
        print(f"{name}: {n:,} rows in {os.path.join(args.out, name)}/")
    print(f"specs of the converted samples: {os.path.join(args.out, 'samples.yaml')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hepflow`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere on the line, before or after the subcommand
    argv = [a for a in argv if a != "--debug"]
    parser = _Parser(prog="hepflow", description="Deep learning for high-energy physics.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also HEPFLOW_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="generate top/QCD jets, train a CNN and ParticleNet-Lite and the baselines, print the report")
    p.add_argument("--data-dir", default="demo_data", help="where the generated jets go (reused, resumable)")
    p.add_argument("--jets", type=_positive_int, default=14_000,
                   help="training and validation jets to generate, half top, half QCD")
    p.add_argument("--test-top", type=_positive_int, default=2_000, help="top jets of the independent test sample")
    p.add_argument("--test-qcd", type=_positive_int, default=14_000, help="QCD jets of the independent test sample")
    p.add_argument("--epochs", type=_positive_int, default=15, help="CNN training epochs (early stopping may end sooner)")
    p.add_argument("--particle-epochs", type=_positive_int, default=12, help="ParticleNet-Lite training epochs")
    p.add_argument("--workers", type=_positive_int, default=None, help="generator processes (default: every core)")
    p.add_argument("--run-root", default="runs/demo", help="where the run and the report go")
    p.set_defaults(func=_demo)
    p = sub.add_parser("generate", help="generate physics data")
    gen = p.add_subparsers(dest="dataset", required=True)
    p = gen.add_parser("top-tagging", help="top and QCD jets with Pythia 8 + FastJet (needs [pythia])")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--jets", type=_positive_int, required=True, help="total jets, half top, half QCD")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-jets", type=_positive_int, default=1000, help="jets per chunk file")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.add_argument("--detector", choices=["simple", "calo", "none"], default="simple",
                   help="detector response: tracks + towers, towers only (like the reference data), none")
    p.add_argument("--no-mpi", action="store_true", help="switch off multi-parton interactions (faster)")
    p.add_argument("--no-hadronization", action="store_true", help="partons as constituents (fast, unphysical)")
    p.add_argument("--format", choices=["native", "reference"], default="native",
                   help="native: every feature, fastest to read; reference: the published pandas layout")
    p.add_argument("--report", action="store_true", help="print and plot (PNG) mass, τ32 and pT per class")
    p.set_defaults(func=_generate)
    p = gen.add_parser("jets", help="QCD, top, RPV-gluino, quark, gluon, W and Z jets in one selection (needs [pythia])")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--process", action="append", required=True,
                   help="PROCESS=N with PROCESS qcd, top, gluino, quark, gluon, w or z (repeatable), "
                        "e.g. --process qcd=30000")
    p.add_argument("--preset", choices=["anomaly", "top_tagging"], default="anomaly",
                   help="anomaly: R = 1.0 jets, 800 < pT < 1000 GeV (contain a 400 GeV gluino); "
                        "top_tagging: R = 0.8, 550 < pT < 650 GeV")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-jets", type=_positive_int, default=500, help="jets per chunk file")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.add_argument("--detector", choices=["simple", "calo", "none"], default="simple",
                   help="detector response: tracks + towers, towers only (like the reference data), none")
    p.add_argument("--no-mpi", action="store_true", help="switch off multi-parton interactions (faster)")
    p.add_argument("--trees", action="store_true", help="also store each jet's C/A, kt, anti-kt and desc-pT trees "
                   "and its C/A Lund features (tree_*, lund, lund_primary)")
    p.add_argument("--pileup-mu", type=_non_negative_float, default=None,
                   help="overlay N ~ Poisson(MU) minimum-bias events of --minbias-pool on each event; the "
                        "pileup-free jet is kept as nopu_*")
    p.add_argument("--minbias-pool", default=None, help="folder written by hepflow generate minbias")
    p.set_defaults(func=_generate_jets)
    p = gen.add_parser("events", help="whole events as object lists (e, μ, γ, jets with b/τ tags, MET) after an "
                       "object-level detector and a single-lepton trigger: SM and signals (needs [pythia])")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--process", action="append", required=True,
                   help="PROCESS=N with PROCESS w, z, ttbar, diboson, qcd, zprime, leptoquark or h_tautau "
                        "(repeatable), e.g. --process w=3000")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-events", type=_positive_int, default=500, help="events per chunk file")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.add_argument("--no-mpi", action="store_true", help="switch off multi-parton interactions (faster)")
    p.set_defaults(func=_generate_events)
    p = gen.add_parser("minbias", help="a pool of minimum-bias (inelastic 14 TeV) events for pileup (needs [pythia])")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--events", type=_positive_int, required=True, help="events in the pool")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-events", type=_positive_int, default=2000, help="events per chunk file")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.set_defaults(func=_generate_minbias)
    p = gen.add_parser("jet-ntuples", help="rewrite generated top/QCD jets as ROOT TTrees, Parquet tables or files in "
                       "the published top-tagging layout (needs [root]; published: [formats])")
    p.add_argument("--from", dest="src", required=True, help="folder written by hepflow generate top-tagging")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", dest="fmt", required=True, choices=["root", "parquet", "published"])
    p.add_argument("--seed", type=int, default=0, help="seed of the per-jet particle order")
    p.set_defaults(func=_generate_jet_ntuples)
    p = gen.add_parser("calo-showers", help="e+/γ/π+ showers in the CaloGAN geometry and format (parametrized)")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--showers", type=_positive_int, required=True, help="showers per particle")
    p.add_argument("--particle", action="append", choices=["eplus", "gamma", "piplus"],
                   help="particle (repeatable; default all three)")
    p.add_argument("--chunk-showers", type=_positive_int, default=5000, help="showers per chunk file")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.add_argument("--emin", type=_positive_float, default=1.0, help="lowest incident energy (GeV)")
    p.add_argument("--emax", type=_positive_float, default=100.0, help="highest incident energy (GeV)")
    p.set_defaults(func=_generate_calo)
    p = gen.add_parser("lartpc", help="LArTPC wire-readout events (U, V, Y planes) with truth (parametrized)")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--topology", action="append", required=True,
                   help="TOPOLOGY=N with TOPOLOGY numu_cc, nue_cc, nc_pi0 or muon (repeatable), e.g. --topology nue_cc=300")
    p.add_argument("--chunk-events", type=_positive_int, default=50, help="events per chunk file")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--seed", type=int, default=1, help="run seed; chunk seeds derive from it")
    p.set_defaults(func=_generate_lartpc)
    p = sub.add_parser("reco", help="reconstruction graphs")
    reco_sub = p.add_subparsers(dest="reco_command", required=True)
    p = reco_sub.add_parser("show", help="print a RecoGraph's steps and products; draw it (PNG), log it to TensorBoard")
    p.add_argument("graph", choices=["lartpc", "calo_clusters"], help="the graph")
    p.add_argument("--png", default=None, help="write a picture of the DAG here")
    p.add_argument("--logdir", default=None, help="write the compiled graph as a TensorBoard log here")
    p.set_defaults(func=_reco_show)
    p = reco_sub.add_parser("export", help="one SavedModel: raw LArTPC ADC in, hits, event class and pixel classes "
                                           "out (the reconstruction graph and trained runs' networks)")
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--event-class", default=None, metavar="RUN", help="a run of configs/lartpc/event_cnn.yaml")
    p.add_argument("--segmentation", default=None, metavar="RUN", help="a run of configs/lartpc/segmentation_unet.yaml")
    p.set_defaults(func=_reco_export)
    p = reco_sub.add_parser("quality", help="reconstruct generated LArTPC events; hit efficiency, purity, charge "
                                            "and noise against truth per plane")
    p.add_argument("data_dir", help="folder written by hepflow generate lartpc")
    p.add_argument("--topology", default="muon", choices=["numu_cc", "nue_cc", "nc_pi0", "muon"],
                   help="which events (default muon: minimum-ionizing tracks)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="events per reconstruction batch")
    p.set_defaults(func=_reco_quality)
    p = sub.add_parser("study", help="studies that train and evaluate many runs")
    st = p.add_subparsers(dest="study", required=True)
    p = st.add_parser("anomaly", help="autoencoders, VAE, decorrelation, contamination, bump hunt, CWoLa, LLP")
    p.add_argument("--data", default="data/anomaly", help="qcd/gluino/top chunk files (hepflow generate jets)")
    p.add_argument("--out", default="runs/anomaly", help="runs, report.md, report.json and plots (rerun resumes)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="autoencoder epochs")
    p.add_argument("--classifier-epochs", type=_positive_int, default=8, help="CWoLa, LLP and supervised epochs")
    p.add_argument("--steps-per-epoch", type=_positive_int, default=None, help="bound the steps per epoch")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="batch size of every run")
    p.add_argument("--adversary-weights", type=float, nargs="+", default=[1.0, 10.0, 100.0], metavar="LAMBDA",
                   help="λ of the mass-decorrelated autoencoders")
    p.set_defaults(func=_study_anomaly)
    p = st.add_parser("pileup", help="jet mass and pT after CHS, area-median, SoftKiller and PUMML against the "
                      "pileup-free jets; taggers trained without pileup scored with it")
    p.add_argument("--data", action="append", required=True,
                   help="a folder of hepflow generate jets --pileup-mu (repeatable: one per μ)")
    p.add_argument("--pumml", default=None, help="a finished PUMML run (configs/pileup/pumml_mu140.yaml)")
    p.add_argument("--tagger", action="append", default=[], help="a finished tagger run trained without pileup "
                   "(repeatable)")
    p.add_argument("--out", default="studies/pileup", help="report.md, report.json, PNGs and TensorBoard logs")
    p.add_argument("--test-fraction", type=_positive_float, default=0.33,
                   help="the last files of each process that are test jets (as in the PUMML config)")
    p.add_argument("--validation-fraction", type=_non_negative_float, default=0.17,
                   help="the files before them that are validation jets (as in the PUMML config)")
    p.set_defaults(func=_study_pileup)
    p = st.add_parser("events", help="event-level anomaly detection: runs on whole events and k-means/isolation-forest "
                      "baselines against the signals, on the weighted SM cocktail")
    p.add_argument("--data", default="data/events", help="the folder of hepflow generate events")
    p.add_argument("--run", action="append", required=True, help="a finished anomaly run on the events (repeatable)")
    p.add_argument("--signal", action="append", default=None, help="signal process (repeatable; default all)")
    p.add_argument("--no-baselines", action="store_true", help="skip k-means and the isolation forest")
    p.add_argument("--out", default="studies/events", help="report.md, report.json, PNGs and TensorBoard logs")
    p.set_defaults(func=_study_events)
    p = sub.add_parser("datasets", help="tfds datasets of hepflow")
    ds_sub = p.add_subparsers(dest="action", required=True)
    p = ds_sub.add_parser("build", help="build a tfds dataset offline (no apache-beam needed)")
    p.add_argument("name", choices=["top_tagging", "calo_showers", "jet_classes", "lhc_events"], help="dataset")
    p.add_argument("--config", default=None, help="builder config (top_tagging: generated, generated_beam, "
                   "pileup_mu20, pileup_mu60, pileup_mu140, reference; calo_showers: eplus, gamma, piplus, reference; "
                   "jet_classes: jets5, w_vs_qcd; lhc_events: cocktail, sm)")
    p.add_argument("--data-dir", default=None, help="tfds data dir (default ~/tensorflow_datasets)")
    p.add_argument("--manual-dir", default=None, help="folder with the published files (reference config)")
    p.set_defaults(func=_datasets_build)
    p = sub.add_parser("train", help="train the model of a config YAML through the pipeline; writes a run dir")
    p.add_argument("config", nargs="?", default=None, help="training config (see configs/)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<name>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run from its last backup (killed, crashed or stopped by Ctrl-C)")
    p.add_argument("--strategy", choices=["auto", "default", "mirrored", "multi_worker"], default=None,
                   help="tf.distribute strategy (default: the config's training.strategy, auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set training.epochs=2 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the run directory")
    p.set_defaults(func=_train)
    p = sub.add_parser("offload", help="train an image tagger on a machine with Keras but no TensorFlow: "
                                       "pack here, fit there, unpack here into a run directory")
    off = p.add_subparsers(dest="offload_command", required=True)
    p = off.add_parser("pack", help="a config's train/validation images, untrained model and optimizer")
    p.add_argument("config", help="training config of an image model")
    p.add_argument("pack_dir", help="pack folder (several configs may share it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.set_defaults(func=_offload)
    p = off.add_parser("fit", help="train a pack with Keras alone (KERAS_BACKEND picks jax, torch or tensorflow)")
    p.add_argument("pack_dir", help="PACK_DIR/<run name> written by pack")
    p.add_argument("fit_dir", help="where model.keras, history.csv and fit_record.json go")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the config's epochs")
    p.add_argument("--max-minutes", type=_positive_float, default=None,
                   help="stop after the epoch that ends past this wall time")
    p.set_defaults(func=_offload)
    p = off.add_parser("unpack", help="a run directory from a pack and a fit (the model checked to reload here)")
    p.add_argument("pack_dir", help="PACK_DIR/<run name>")
    p.add_argument("fit_dir", help="the fit folder")
    p.add_argument("run_dir", help="the run directory to write")
    p.set_defaults(func=_offload)
    p = sub.add_parser("scan", help="grid/random search over config keys, N runs in parallel, resumable")
    p.add_argument("scan_file", help="scan YAML (see hepflow.training.scan)")
    p.set_defaults(func=_scan)
    p = sub.add_parser("runs", help="list run directories and their key metrics")
    runs_sub = p.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("list", help="every run under a folder: status, epochs, best validation metrics")
    p.add_argument("root", nargs="?", default="runs", help="folder searched recursively (default runs)")
    p.add_argument("--sort", default="run_dir",
                   help="column key: run_dir, model, best_val_loss, val_auc, val_accuracy, train_seconds, start")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=_runs)
    p = sub.add_parser("cache", help="list or remove the pipeline's disk caches (transformed rows after epoch 1)")
    cache_sub = p.add_subparsers(dest="cache_command", required=True)
    for command, text in (("list", "every cache folder: size, samples, last change"), ("clear", "remove caches")):
        p = cache_sub.add_parser(command, help=text)
        p.add_argument("--dir", default=None, help="cache root (default $HEPFLOW_CACHE_DIR or ~/.cache/hepflow/pipeline)")
        if command == "clear":
            p.add_argument("names", nargs="*", help="cache folders to remove, as hepflow cache list names them")
            p.add_argument("--all", action="store_true", help="remove every cache not being filled right now")
        p.set_defaults(func=_cache)
    p = sub.add_parser("cluster", help="print this task's TF_CONFIG from a batch scheduler's environment "
                                       "(cluster/slurm/train.sbatch, cluster/kubernetes/)")
    p.add_argument("what", choices=["tf-config"])
    p.add_argument("--scheduler", required=True, choices=["slurm", "kubernetes"])
    p.add_argument("--port", type=_positive_int, default=2222, help="first worker port on each host (default 2222)")
    p.add_argument("--job", default=None, help="kubernetes: the indexed Job's name (default $HEPFLOW_JOB)")
    p.add_argument("--service", default=None, help="kubernetes: the headless Service (default $HEPFLOW_SERVICE)")
    p.add_argument("--replicas", type=_positive_int, default=None,
                   help="kubernetes: the Job's completions (default $HEPFLOW_REPLICAS)")
    p.set_defaults(func=_cluster)
    p = sub.add_parser("data-service", help="run a tf.data service dispatcher or worker (preprocessing on other "
                                            "processes or machines; train with training.service=grpc://HOST:PORT)")
    p.add_argument("role", choices=["dispatcher", "worker"])
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    p.add_argument("--dispatcher", default=None, metavar="HOST:PORT", help="worker: the dispatcher to serve")
    p.add_argument("--work-dir", default=None, help="dispatcher: journal folder for fault tolerance")
    p.set_defaults(func=_data_service)
    p = sub.add_parser("evaluate", help="score runs on their test split with the baselines; ROC, report, TensorBoard")
    p.add_argument("run_dirs", nargs="+", help="run directories (sharing the same test files)")
    p.add_argument("--out", default=None, help="report folder (default RUN_DIR/evaluation for one run)")
    p.add_argument("--no-baselines", action="store_true", help="skip the cut-based tagger and the BDT")
    p.add_argument("--signal", action="append", default=[], metavar="NAME=GLOB",
                   help="anomaly and label-proportion runs: signal files to score against the run's test "
                        "background (repeatable)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--efficiencies", type=float, nargs="+", default=[0.3, 0.5], metavar="EFF",
                   help="signal efficiencies of the rejection columns (default 0.3 0.5; e.g. 0.9 0.95 "
                        "for electron identification)")
    p.add_argument("--peer", action="append", default=[], choices=["energyflow_pfn"],
                   help="also train and score a peer implementation with the same budget (needs [peers])")
    p.add_argument("--test-dir", action="append", default=None, metavar="DIR",
                   help="score the files of DIR matching the samples' patterns instead of the test split "
                        "(an independent, larger test sample; must not hold training files); repeat it to "
                        "score several independent samples as one")
    p.add_argument("--ensemble", action="append", default=[], metavar="NAME=RUN,RUN[,...]",
                   help="also score the mean of these runs' outputs (run names from their configs) as one "
                        "tagger (repeatable)")
    p.add_argument("--baseline-seed", type=int, default=1,
                   help="seed of the BDT baseline (default 1; the same whichever runs are evaluated)")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("export", help="export a run (or an ensemble of runs) as a SavedModel (preprocessing "
                                      "inside) for TF Serving")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a finished run directory; several with --ensemble-name: one model scoring their mean")
    p.add_argument("out", help="model base folder; the export goes to OUT/<run name>/<version>")
    p.add_argument("--ensemble-name", default=None, metavar="NAME",
                   help="export the runs as one ensemble model under this name (as evaluate --ensemble)")
    p.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    p.add_argument("--onnx", action="store_true",
                   help="also write ONNX files under onnx/: both signatures of a run, serving_default of an "
                        "ensemble (needs the [onnx] extra)")
    p.set_defaults(func=_export)
    p = sub.add_parser("predict", help="score a file with an exported model (streaming, atomic output)")
    p.add_argument("--model", required=True, help="export folder OUT/<name>/<version>")
    p.add_argument("--input", required=True, help="HDF5 file with the model's raw inputs, a file in the published "
                   "top-tagging layout, or a ROOT/Parquet file (map inputs to branches with --key)")
    p.add_argument("--output", required=True, help="output HDF5 file (dataset 'score', one per input row)")
    p.add_argument("--key", action="append", default=[], metavar="INPUT=DATASET",
                   help="dataset (ROOT: branch, Parquet: column) of a raw input when its name differs; in ROOT and "
                        "Parquet files a comma-separated list of branches is stacked on a last axis (repeatable)")
    p.add_argument("--sort-by", default=None, metavar="BRANCH",
                   help="ROOT/Parquet: order each event's lists by this branch (decreasing) before they are cut "
                        "to the length the model takes")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="rows per model call")
    p.set_defaults(func=_predict)
    p = sub.add_parser("inspect", help="validate sample specs (YAML) and list their rows and features, or list what "
                       "a data file holds (ROOT trees and branches, Parquet columns, HDF5 datasets)")
    p.add_argument("specs", help="YAML file of sample specs, or a .root, .parquet or .h5 file")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("explain", help="what a tagger looks at: mean images per class and score quantile, pixel-score "
                       "Pearson maps (image models), integrated gradients and saliency (others); PNG, JSON, TensorBoard")
    p.add_argument("run_dir", help="a finished classification run")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/explain)")
    p.add_argument("--jets", type=_positive_int, default=2000, help="test jets used (default 2000)")
    p.set_defaults(func=_explain)
    p = sub.add_parser("convert", help="native HDF5 copies of the samples of a specs YAML (ROOT, Parquet, tfds, "
                       "published layout, HDF5 selections); atomic, resumable; writes OUT/samples.yaml")
    p.add_argument("specs", help="YAML file of sample specs")
    p.add_argument("out", help="output folder")
    p.set_defaults(func=_convert)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "export" and not any(e.startswith("-") for e in extra):
        # argparse ends the positionals at the first option: `RUN RUN --ensemble-name N OUT` leaves OUT over.
        paths = [*args.run_dirs, args.out, *extra]
        args.run_dirs, args.out = paths[:-1], paths[-1]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if debug or os.environ.get("HEPFLOW_DEBUG", "") not in ("", "0"):
        return args.func(args)
    try:
        return args.func(args)
    except Exception as e:  # a clear one-line error for the command line
        message = _one_line(e)
        if message is None:
            raise
        print(f"hepflow: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
