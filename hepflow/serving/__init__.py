"""hepflow.serving (see docs/architecture.md)."""
