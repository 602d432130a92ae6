from __future__ import annotations

import os

import pytest

from hepflow.io import atomic_path, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(str(path), {"v": 1})
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(path) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and f".tmp-{os.getpid()}" in tmp
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk on fire")
    assert path.read_text() == '{"v": 1}'
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_folder_is_published_whole_and_suffix_kept(tmp_path):
    target = tmp_path / "1"
    with atomic_path(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        assert not target.exists()
    assert (target / "variables").is_dir() and os.listdir(tmp_path) == ["1"]
    with atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
        assert tmp.endswith(".keras")
        open(tmp, "w").close()
    assert sorted(os.listdir(tmp_path)) == ["1", "model.keras"]
