"""tfds folder of the ``top_tagging`` dataset (the builder lives in hepflow.datasets.top_tagging)."""
