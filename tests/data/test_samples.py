from __future__ import annotations

import math

import pytest

from hepflow.data import DataError, SampleSpec, load_specs, specs_from_dlkit


def test_spec_is_frozen_and_normalizes_fields(jet_dir):
    s = SampleSpec(name="top", files=str(jet_dir / "top_*.h5"), keys=["x", "/jets/mass"], label=1, rate=2)
    assert s.files == (str(jet_dir / "top_*.h5"),)
    assert s.keys == {"x": "x", "jets_mass": "/jets/mass"}
    assert s.rate == 2.0 and s.label == 1
    with pytest.raises(Exception):
        s.rate = 3.0  # frozen
    assert len(s.resolve_files()) == 2


@pytest.mark.parametrize("rate", [0, -1, math.nan, math.inf, "fast"])
def test_bad_rate_is_rejected(rate):
    with pytest.raises(DataError, match=r"rate.*Received: rate="):
        SampleSpec(name="a", files="a.h5", keys=["x"], rate=rate)


def test_bad_label_name_and_keys_are_rejected():
    with pytest.raises(DataError, match="label"):
        SampleSpec(name="a", files="a.h5", keys=["x"], label=True)
    with pytest.raises(DataError, match="label"):
        SampleSpec(name="a", files="a.h5", keys=["x"], label=[])
    with pytest.raises(DataError, match="name"):
        SampleSpec(name="a/b", files="a.h5", keys=["x"])
    with pytest.raises(DataError, match="keys"):
        SampleSpec(name="a", files="a.h5", keys={})
    with pytest.raises(DataError, match="files"):
        SampleSpec(name="a", files=[], keys=["x"])


def test_vector_label():
    s = SampleSpec(name="a", files="a.h5", keys=["x"], label=[0, 1, 0.5])
    assert s.label == (0.0, 1.0, 0.5)


def test_missing_file_and_empty_glob_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*nope\.h5"):
        SampleSpec(name="a", files=str(tmp_path / "nope.h5"), keys=["x"]).resolve_files()
    with pytest.raises(DataError, match=r"glob pattern matches no file.*\*\.h5"):
        SampleSpec(name="a", files=str(tmp_path / "*.h5"), keys=["x"]).resolve_files()


def test_load_specs_from_yaml_file_resolves_relative_paths(jet_dir, tmp_path):
    cfg = tmp_path / "samples.yaml"
    rel = jet_dir
    cfg.write_text(f"""
samples:
  - name: qcd
    files: {rel}/qcd_*.h5
    keys: {{x: x, mass: mass}}
    label: 0
    rate: 1
  - name: top
    files: [{rel}/top_0.h5, {rel}/top_1.h5]
    keys: {{x: x, mass: mass}}
    label: 1
    rate: 3
    selection: "mass > 50"
""")
    specs = load_specs(cfg)
    assert [s.name for s in specs] == ["qcd", "top"]
    assert specs[1].rate == 3.0 and specs[1].selection == "mass > 50"
    assert len(specs[1].resolve_files()) == 2
    # relative file names are taken relative to the YAML file
    (tmp_path / "rel.yaml").write_text("- {name: a, files: data/a.h5, keys: [x]}\n")
    assert load_specs(tmp_path / "rel.yaml")[0].files == (str(tmp_path / "data/a.h5"),)


def test_round_trip_through_to_dict(jet_dir):
    s = SampleSpec(name="t", files=[str(jet_dir / "top_0.h5")], keys={"x": "x"}, label=[0, 1],
                   rate=0.5, selection="mass > 1", weight_key="pt")
    assert load_specs([s.to_dict()]) == [s]


def test_dlkit_compact_form(jet_dir):
    compact = [[str(jet_dir / "qcd_*.h5"), ["x", "mass"], 0, 1],
               [str(jet_dir / "top_*.h5"), ["x", "mass"], 1, 3]]
    specs = specs_from_dlkit(compact)
    assert [(s.name, s.label, s.rate) for s in specs] == [("class0", 0, 1.0), ("class1", 1, 3.0)]
    assert load_specs(compact) == specs
    assert load_specs(str(compact).replace("'", '"')) == specs  # as a YAML string
    with pytest.raises(DataError, match=r"\[files, \[keys\], label, rate\]"):
        specs_from_dlkit([["a.h5", ["x"], 0]])


def test_load_specs_rejects_unknown_fields_and_duplicates():
    with pytest.raises(DataError, match="unknown fields"):
        load_specs([{"name": "a", "files": "a.h5", "keys": ["x"], "weight": 2}])
    with pytest.raises(DataError, match="unique"):
        load_specs([{"name": "a", "files": "a.h5", "keys": ["x"]}] * 2)
    with pytest.raises(DataError, match="non-empty list"):
        load_specs("[]")
