"""tfds folder of the ``jet_classes`` dataset (the builder lives in hepflow.datasets.jet_classes)."""
