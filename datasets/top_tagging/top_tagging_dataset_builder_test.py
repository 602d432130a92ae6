"""tfds builder test of top_tagging (the `reference` config, on dummy files in the published layout)."""
import os

import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tables")

from hepflow.datasets.top_tagging import Builder  # noqa: E402


class TopTaggingReferenceTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["reference"]
    EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "dummy_data", "reference")
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # the reference files are read with pandas + PyTables
    SPLITS = {"train": 10, "validation": 4, "test": 4}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
