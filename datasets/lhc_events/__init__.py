"""tfds folder of the ``lhc_events`` dataset (the builder lives in hepflow.datasets.lhc_events)."""
