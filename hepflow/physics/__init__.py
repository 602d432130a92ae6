"""hepflow.physics (see docs/architecture.md)."""
