"""``evaluate_runs``: score the test split of trained runs, add the baselines, write one report.

All runs must share the test files (the same ``data`` section in their configs). Jets are
matched across taggers by record id, never by position, so reader order cannot mix them up.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from hepflow.data import RECORD_ID, SampleSpec, make_dataset
from hepflow.errors import ConfigError, DataError
from hepflow.evaluation.baselines import ROC_EFFICIENCIES, CutBasedTagger, bdt_tagger
from hepflow.evaluation.metrics import paired_bootstrap
from hepflow.evaluation.report import format_report, json_safe, tagger_report
from hepflow.io import write_atomic
from hepflow.ops.calo import LAYERS, SHAPE_NAMES, ShowerShapes
from hepflow.runs import (build_transform, finished_run, refuse_seen_files, score_specs, sort_by_record, specs_in_dir,
                          split_specs)

__all__ = ["evaluate_runs", "high_level_arrays", "shower_shape_arrays", "baseline_scores"]

#: The keys the baselines read from native top-tagging files.
HIGH_LEVEL_KEYS = {"mass": "mass", "pt": "pt", "tau": "tau"}
#: Baselines with a score per jet, which each trained run is compared with jet by jet.
PAIRED_BASELINES = ("bdt", "bdt_shower_shapes")


def _read_sorted(specs: Sequence[SampleSpec], keys: Mapping[str, str], names: Sequence[str], *,
                 transform=None) -> dict[str, np.ndarray]:
    """Reads every row of ``specs`` with ``keys`` through the pipeline (optionally transformed).

    Returns:
        ``record_id``, ``label`` and each feature in ``names``, sorted by record id.
    """
    read = [SampleSpec(**{**s.to_dict(), "keys": dict(keys)}) for s in specs]
    ds = make_dataset(read, batch_size=4096, transform=transform, epoch="all", shuffle=0, drop_remainder=False,
                      with_record_id=True)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (RECORD_ID, "label", *names)}
    for x, y in ds:
        parts["label"].append(y.numpy())
        for k in (RECORD_ID, *names):
            parts[k].append(x[k].numpy())
    ids, *rest = sort_by_record(*(np.concatenate(parts[k]) for k in parts))
    return {"record_id": ids, **dict(zip(("label", *names), rest))}


def high_level_arrays(specs: Sequence[SampleSpec]) -> dict[str, np.ndarray]:
    """Reads mass, pT and τ1..3 of every row (native top-tagging files) through the pipeline.

    Returns:
        ``record_id``, ``label``, ``mass``, ``pt``, ``tau21``, ``tau32`` and ``features``
        ``(n, 7)`` (mass, pT, τ1, τ2, τ3, τ21, τ32), sorted by record id.
    """
    a = _read_sorted(specs, HIGH_LEVEL_KEYS, ("mass", "pt", "tau"))
    tau = a.pop("tau").astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a["tau21"] = np.where(tau[:, 0] > 0, tau[:, 1] / tau[:, 0], 0.0)
        a["tau32"] = np.where(tau[:, 1] > 0, tau[:, 2] / tau[:, 1], 0.0)
    a["features"] = np.column_stack([a["mass"], a["pt"], tau, a["tau21"], a["tau32"]])
    return a


def is_calo(specs: Sequence[SampleSpec]) -> bool:
    """Whether the samples are calorimeter showers in the CaloGAN layout."""
    return all(set(LAYERS) <= set(s.keys) for s in specs)


def shower_shape_arrays(specs: Sequence[SampleSpec]) -> dict[str, np.ndarray]:
    """Shower-shape features (``hepflow.ops.calo.SHAPE_NAMES``) of every row, sorted by record id.

    Returns:
        ``record_id``, ``label``, ``features`` ``(n, 18)`` and ``energy`` when the files hold it.
    """
    keys = {k: k for k in LAYERS}
    with_energy = all("energy" in s.keys for s in specs)
    if with_energy:
        keys["energy"] = specs[0].keys["energy"]
    a = _read_sorted(specs, keys, (*SHAPE_NAMES, *(["energy"] if with_energy else [])), transform=ShowerShapes())
    out = {"record_id": a["record_id"], "label": a["label"], "features": np.stack([a[k] for k in SHAPE_NAMES], 1)}
    if with_energy:
        out["energy"] = a["energy"].reshape(-1)
    return out


def baseline_scores(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], *,
                    efficiencies: Sequence[float] = (0.3, 0.5), seed: int = 0) -> tuple[dict, dict]:
    """Fits the cut-based tagger and the BDT on ``train`` arrays, applies them to ``test``.

    Returns:
        ``({"bdt": test scores}, cut-based working points on test)``.
    """
    cut = CutBasedTagger(efficiencies=tuple(efficiencies)).fit(train["mass"], train["tau32"], train["label"])
    points = cut.working_points(test["mass"], test["tau32"], test["label"],
                                efficiencies=sorted(set(ROC_EFFICIENCIES) | set(efficiencies)))
    bdt = bdt_tagger(train["features"], train["label"], seed=seed)
    return {"bdt": bdt.predict_proba(test["features"])[:, 1]}, points


def evaluate_runs(run_dirs: Sequence[str], *, out_dir: str | None = None, baselines: bool = True,
                  extra_scores: Mapping[str, tuple] | None = None, efficiencies: Sequence[float] = (0.3, 0.5), batch_size: int = 1024,
                  test_dir: str | Sequence[str] | None = None, ensembles: Mapping[str, Sequence[str]] | None = None,
                  baseline_seed: int = 1, progress: bool = True) -> dict[str, dict[str, float]]:
    """Evaluates trained runs (and the baselines) on their common test split.

    Args:
        run_dirs: Run directories written by :func:`hepflow.training.train`.
        out_dir: Where ``report.json``, ``report.txt``, ``roc.png``, ``sculpting.png`` and
            TensorBoard logs (``tb/``) go; default ``<run_dir>/evaluation`` for one run.
        baselines: Also fit baselines on the training split: for jets the cut-based tagger
            and the BDT on high-level features (needs ``mass``, ``pt`` and ``tau`` in the
            files); for calorimeter showers a BDT on the shower shapes.
        extra_scores: More rows scored elsewhere on the same test split: name →
            ``(record_ids, scores, info)``, matched to the runs' records by id (``info`` joins the
            row); :func:`hepflow.studies.peers.evaluate_with_peers` passes peer packages' scores.
        efficiencies: Signal efficiencies of the rejection columns.
        batch_size: Scoring batch size.
        test_dir: Score the files of this folder that match the samples' patterns instead of
            the configs' test split (an independent, larger test sample, e.g. more QCD jets
            to measure high rejections); the baselines still fit on the training split.
            Several folders (independent samples, none holding another's files) are scored
            as one sample.
        ensembles: Extra rows: ensemble name → names of two or more of the runs; the ensemble's
            score is the mean of its members' scores (probabilities), its ``params`` and
            ``train_seconds`` the members' sums.
        baseline_seed: Seed of the BDT (its early-stopping split), fixed so that the baselines
            do not depend on which runs are evaluated or in which order, and of the paired
            bootstrap. Default 1.
        progress: Show progress bars.

    Returns:
        Tagger name → metrics (``auc``, ``rejection_at_<ε>`` and its ``_err``, plus
        ``params`` and ``train_seconds`` for trained runs, and ``paired``: per-jet baseline →
        :func:`~hepflow.evaluation.metrics.paired_bootstrap` of the run against it, on the same
        test jets).
    """
    if not run_dirs:
        raise ConfigError("evaluate_runs needs at least one run directory.")
    runs = [finished_run(d) for d in run_dirs]
    names = [r["config"]["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"Runs must have distinct names to share a report. Received: {names}")
    if out_dir is None:
        if len(runs) > 1:
            raise ConfigError("Pass out_dir (--out) when evaluating several runs together.")
        out_dir = os.path.join(run_dirs[0], "evaluation")
    ensembles = dict(ensembles or {})
    _check_ensembles(ensembles, names)
    splits = _test_splits(runs, run_dirs, test_dir)
    ref_ids, labels, scores = _score_runs(runs, splits, batch_size=batch_size, progress=progress)
    for ens, members in ensembles.items():
        scores[ens] = np.mean([scores[m] for m in members], axis=0)
    peer_info = {}
    for name, (ids, s, info) in (extra_scores or {}).items():
        if not np.array_equal(ids, ref_ids):
            raise DataError(f"'{name}' scored other test records than the runs. Received: {len(ids)} records, "
                            f"expected {len(ref_ids)}")
        scores[name], peer_info[name] = s, dict(info or {})
    cut_points, mass = None, None
    if baselines:
        cut_points, mass = _baseline_scores(splits[0], ref_ids, scores, efficiencies=efficiencies, seed=baseline_seed)
    table = tagger_report(labels, scores, out_dir=out_dir, cut_based=cut_points, mass=mass,
                          efficiencies=tuple(efficiencies), log_dir=os.path.join(out_dir, "tb"))
    for run in runs:
        row = table[run["config"]["name"]]
        for k in ("params", "train_seconds", "epochs", "train_jets_seen"):
            if k in run["summary"]:
                row[k] = run["summary"][k]
    for ens, members in ensembles.items():
        rows = [table[m] for m in members]
        table[ens]["members"] = list(members)
        for k in ("params", "train_seconds", "train_jets_seen"):
            if all(k in row for row in rows):
                table[ens][k] = sum(row[k] for row in rows)
    for peer, info in peer_info.items():
        table[peer].update(info)
    for name in [*names, *ensembles]:
        table[name]["paired"] = {base: paired_bootstrap(labels, scores[name], scores[base], efficiencies=efficiencies,
                                                        seed=baseline_seed)
                                 for base in PAIRED_BASELINES if base in scores}
    row_count = {"test_jets": int(len(labels)), "test_signal": int(np.sum(labels == 1))}
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(json_safe({"test": row_count, "taggers": table}), indent=1))
    write_atomic(os.path.join(out_dir, "report.txt"), format_report(table, tuple(efficiencies)) + "\n")
    return table


def _check_ensembles(ensembles: Mapping[str, Sequence[str]], names: Sequence[str]) -> None:
    for ens, members in ensembles.items():
        unknown = sorted(set(members) - set(names))
        if unknown or len(set(members)) < 2 or ens in names:
            raise ConfigError(f"Ensemble {ens!r} needs two or more distinct runs among {names} and a name of its own. "
                              f"Received: {list(members)}")


def _test_splits(runs, run_dirs: Sequence[str], test_dir) -> list[dict]:
    """Each run's splits, with ``test`` from ``test_dir`` when given; all runs must share their test files."""
    splits = [split_specs(r["config"]) for r in runs]
    if test_dir is not None:
        for run, split in zip(runs, splits):
            split["test"] = specs_in_dir(run["config"], test_dir)
    tests = [[(s.name, s.files) for s in sp["test"]] for sp in splits]
    if not tests[0]:
        raise DataError(f"{run_dirs[0]}: the config has no test split (data.split.test = 0).")
    for d, t in zip(run_dirs[1:], tests[1:]):
        if t != tests[0]:
            raise DataError(f"{d} has other test files than {run_dirs[0]}; a shared report needs the same "
                            "`data` section in every config.")
    if test_dir is not None:
        refuse_seen_files(splits[0]["test"], [r["config"] for r in runs],
                          where=test_dir if isinstance(test_dir, str) else ", ".join(test_dir))
    return splits


def _score_runs(runs, splits, *, batch_size: int, progress: bool):
    """``(record ids, labels, run name → scores)`` on the common test records."""
    scores: dict[str, np.ndarray] = {}
    ref_ids = labels = None
    for run, split in zip(runs, splits):
        model = keras.saving.load_model(os.path.join(run["dir"], "model.keras"))
        ids, y, s = score_specs(model, split["test"], transform=build_transform(run["config"]),
                                batch_size=batch_size, progress=progress, desc=f"scoring {run['config']['name']}")
        if ref_ids is None:
            ref_ids, labels = ids, y
        elif not np.array_equal(ids, ref_ids):
            raise DataError(f"{run['dir']}: scored other test records than {runs[0]['dir']}.")
        scores[run["config"]["name"]] = s
    return ref_ids, labels, scores


def _baseline_scores(split, ref_ids, scores: dict, *, efficiencies, seed: int):
    """Adds the baselines' scores to ``scores`` (fitted on the training split); returns the cut-based
    working points and the test jets' masses, or ``(None, None)``."""
    if is_calo(split["test"]):
        test_sh, train_sh = shower_shape_arrays(split["test"]), shower_shape_arrays(split["train"])
        if not np.array_equal(test_sh["record_id"], ref_ids):
            raise DataError("The shower shapes and the scores cover different test records.")
        bdt = bdt_tagger(train_sh["features"], train_sh["label"], seed=seed)
        scores["bdt_shower_shapes"] = bdt.predict_proba(test_sh["features"])[:, 1]
        return None, None
    try:
        test_hl = high_level_arrays(split["test"])
        train_hl = high_level_arrays(split["train"])
    except DataError as e:
        print(f"baselines skipped: the files lack mass/pt/tau ({e})")
        return None, None
    if not np.array_equal(test_hl["record_id"], ref_ids):
        raise DataError("The high-level features and the scores cover different test records.")
    bdt, cut_points = baseline_scores(train_hl, test_hl, efficiencies=efficiencies, seed=seed)
    scores.update(bdt)
    return cut_points, test_hl["mass"]
