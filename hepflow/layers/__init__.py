"""hepflow.layers (see docs/architecture.md)."""
