"""tfds builder tests of calo_showers: `reference` on dummy files in the published layout, and `eplus` generated."""
import os
import tempfile

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from hepflow.datasets.calo_showers import Builder  # noqa: E402


class CaloShowersReferenceTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["reference"]
    EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "dummy_data", "reference")
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # the files are read with h5py
    SPLITS = {"train": 24, "validation": 3, "test": 3}  # 10 showers per particle, 80/10/10
    SKIP_CHECKSUMS = True


class CaloShowersGeneratedTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["eplus"]
    # No input files; tfds's test harness also generates into EXAMPLE_DIR, so it must not be in the repo.
    EXAMPLE_DIR = tempfile.mkdtemp(prefix="calo_showers_generated_")
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # the simulation writes chunk files
    SPLITS = {"train": 2000, "validation": 250, "test": 250}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
