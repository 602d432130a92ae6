"""hepflow.evaluation (see docs/architecture.md)."""
