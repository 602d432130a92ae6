"""hepflow.cli (see docs/architecture.md)."""
