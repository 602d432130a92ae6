"""tfds folder of the ``calo_showers`` dataset (the builder lives in hepflow.datasets.calo_showers)."""
