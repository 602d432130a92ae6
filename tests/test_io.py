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


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    import os
    import subprocess
    import sys

    from hepflow.io import remove_stale_tmp, writer_pid

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    names = [f".chunk.h5.tmp-{dead}", f".qcd.tmp-{dead}-abcdef12", f".mine.tmp-{os.getpid()}", "data.h5",
             "notes.tmp-x"]
    for name in names[:3] + names[4:]:
        (tmp_path / name).write_text("x")
    (tmp_path / names[1]).unlink()
    (tmp_path / names[1]).mkdir()  # the cache's temporary folders
    (tmp_path / "data.h5").write_text("keep")
    assert writer_pid(names[1]) == int(dead) and writer_pid("data.h5") is None
    assert sorted(remove_stale_tmp(str(tmp_path))) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[2], "data.h5", "notes.tmp-x"])
