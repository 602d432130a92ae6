"""hepflow.training (see docs/architecture.md)."""
