"""What a run is: its config (schema, defaults, registries), its samples split by file, its
directory (written and read here only), and scoring its model on sample specs.

Training, evaluation and serving read runs through this package; it knows none of them.
"""
from __future__ import annotations

from hepflow.runs.config import (SCHEDULES, STRATEGIES, TASKS, apply_overrides, build_model, build_optimizer,
                                 build_transform, load_config)
from hepflow.runs.inputs import model_inputs
from hepflow.runs.layout import (RUN_ENTRIES, RUN_FILES, check_new_run, clear_run, finished_run, git_revision,
                                 package_versions, read_history, read_json, run_state, samples_record)
from hepflow.runs.listing import format_runs, list_runs
from hepflow.runs.scoring import score_specs, sort_by_record, threshold_at
from hepflow.runs.splits import SPLITS, refuse_seen_files, specs_in_dir, split_specs

__all__ = ["load_config", "apply_overrides", "build_model", "build_optimizer", "build_transform", "SCHEDULES",
           "STRATEGIES", "TASKS", "model_inputs", "RUN_FILES", "RUN_ENTRIES", "check_new_run", "clear_run",
           "finished_run", "git_revision", "package_versions", "read_history", "read_json", "run_state",
           "samples_record", "list_runs", "format_runs", "score_specs", "sort_by_record", "threshold_at", "SPLITS", "split_specs",
           "specs_in_dir", "refuse_seen_files"]
