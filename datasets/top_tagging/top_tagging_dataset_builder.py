"""tfds entry point: `tfds build datasets/top_tagging --config generated`."""
from hepflow.datasets.top_tagging import Builder, TopTaggingConfig  # noqa: F401
