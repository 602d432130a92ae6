"""The README's Python examples run as written and print what they claim."""
from __future__ import annotations

import contextlib
import io
import os
import re

import yaml

import hepflow.data as hd

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def blocks(lang: str) -> list[str]:
    with open(README) as f:
        return re.findall(rf"```{lang}\n(.*?)```", f.read(), flags=re.S)


def test_readme_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = blocks("python")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    claimed = re.search(r"print\(.*\)\s+# (.*)", code).group(1)
    assert out.getvalue().strip() == claimed.strip()
    (spec_yaml,) = blocks("yaml")
    (tmp_path / "samples.yaml").write_text(spec_yaml)
    specs = hd.load_specs("samples.yaml")
    assert [s.rate for s in specs] == [3.0, 1.0] and specs[1].selection
    ds = hd.make_dataset("samples.yaml", batch_size=256)
    assert len(ds) > 0 and yaml.safe_load(spec_yaml)[0]["name"] == "qcd"


def test_readme_names_exactly_two_setup_commands_first():
    with open(README) as f:
        text = f.read()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == ["make demo", "make test"]
