"""Where results come out: metrics, baselines, reports and plots."""
from __future__ import annotations

from hepflow.evaluation.baselines import ROC_EFFICIENCIES, CutBasedTagger, bdt_tagger
from hepflow.evaluation.metrics import auc, rejection_at, roc_curve, threshold_at
from hepflow.evaluation.report import format_report, tagger_report
from hepflow.evaluation.runs import evaluate_runs

__all__ = ["auc", "rejection_at", "roc_curve", "threshold_at", "CutBasedTagger", "bdt_tagger", "ROC_EFFICIENCIES",
           "tagger_report", "format_report", "evaluate_runs"]
