"""hepflow.models (see docs/architecture.md)."""
