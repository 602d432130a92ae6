from __future__ import annotations

from hepflow.cli.main import main


def test_inspect_lists_samples(jet_dir, tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"- {{name: top, files: '{jet_dir}/top_*.h5', keys: {{x: x, mass: mass}}, label: 1}}\n")
    assert main(["inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "top: label=1 rate=1.0 rows=2000 files=2" in out
    assert "(8, 4)" in out and "float32" in out


def test_inspect_reports_bad_input_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"- {{name: a, files: '{tmp_path}/none_*.h5', keys: [x]}}\n")
    assert main(["inspect", str(cfg)]) == 2
    assert "hepflow: error: Sample 'a': the glob pattern matches no file" in capsys.readouterr().err


def test_demo_runs_small(tmp_path, capsys):
    from hepflow.cli.demo import run_demo

    result = run_demo(data_dir=str(tmp_path / "d"), jets_per_class=4000, epochs=2)
    assert len(result["jets_per_s"]) == 2 and min(result["jets_per_s"]) > 0
    assert result["val_accuracy"] > 0.7  # better than chance (0.5): the generated classes are separable
    assert "epoch 2:" in capsys.readouterr().out
