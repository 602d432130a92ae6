"""hepflow.ops (see docs/architecture.md)."""
