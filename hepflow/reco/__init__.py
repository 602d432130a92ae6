"""hepflow.reco (see docs/architecture.md)."""
