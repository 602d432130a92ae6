"""Campaigns that train and evaluate many runs: the anomaly-detection study, peer comparisons.

Only this package and the command line compose :mod:`hepflow.training` with
:mod:`hepflow.evaluation`.
"""
from __future__ import annotations
