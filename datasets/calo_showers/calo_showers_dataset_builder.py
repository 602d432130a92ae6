"""tfds entry point: `tfds build datasets/calo_showers --config eplus`."""
from hepflow.datasets.calo_showers import Builder, CaloShowersConfig  # noqa: F401
