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


def test_tfds_command_line_builds_the_eplus_config_offline(tmp_path):
    """`tfds build datasets/calo_showers --config eplus` as a user runs it: a real subprocess."""
    import shutil
    import subprocess
    import sys

    tfds_cli = shutil.which("tfds", path=os.path.dirname(sys.executable))
    assert tfds_cli, "the tfds command line is installed with the [tfds] extra"
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([tfds_cli, "build", here, "--config", "eplus", "--data_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    builder = tfds.builder("calo_showers/eplus", data_dir=str(tmp_path))
    assert builder.info.splits["train"].num_examples == 2000
    example = next(iter(builder.as_dataset(split="test").take(1)))
    assert example["layer_0"].shape == (3, 96) and 1.0 <= float(example["energy"]) <= 100.0
