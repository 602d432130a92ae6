"""Jets from Pythia 8 + FastJet: selection, physics that must hold, determinism, resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="needs the [pythia] extra")

from hepflow.data import SampleSpec, make_dataset  # noqa: E402
from hepflow.physics.pythia_jets import JetSettings, generate_chunk, generate_top_tagging  # noqa: E402


@pytest.fixture(scope="module")
def jets():
    return {p: generate_chunk(p, 40, seed=11)[0] for p in ("top", "qcd")}


def test_selection_and_layout(jets):
    for process, a in jets.items():
        assert a["constituents"].shape == (40, 200, 4) and a["constituents"].dtype == np.float32
        assert np.all((a["pt"] > 550) & (a["pt"] < 650)) and np.all(np.abs(a["eta"]) < 2)
        c = a["constituents"]
        pt = np.hypot(c[..., 1], c[..., 2])
        n = np.minimum(a["n_constituents"], 200)
        for row, k in zip(pt, n):
            assert np.all(np.diff(row[:k]) <= 1e-3) and np.all(row[k:] == 0)  # pT-ordered, zero-padded
        # the constituents add up to the jet (all of them when n <= 200)
        small = a["n_constituents"] <= 200
        jet_pt = np.hypot(c[small, :, 1].sum(1), c[small, :, 2].sum(1))
        np.testing.assert_allclose(jet_pt, a["pt"][small], rtol=1e-3)
        assert set(np.unique(a["type"])) <= {0, 1, 2, 3, 4, 5}
        assert np.all(a["label"] == (1 if process == "top" else 0))


def test_physics_that_must_hold(jets):
    top, qcd = jets["top"], jets["qcd"]
    # top jets: mass peaks near m_t = 173 GeV; the truth top is on shell
    assert 150 < np.median(top["mass"]) < 195
    truth_mass = np.sqrt(np.maximum(top["truth_top"][:, 0] ** 2 - (top["truth_top"][:, 1:] ** 2).sum(1), 0))
    assert abs(np.median(truth_mass) - 173) < 3  # Breit-Wigner, Γt ≈ 1.4 GeV, with Pythia's mass tails
    # QCD jet mass falls: most QCD jets are much lighter than tops
    assert np.median(qcd["mass"]) < 120 and np.median(qcd["mass"]) < np.median(top["mass"]) - 50
    assert np.all(qcd["truth_top"] == 0)
    # three-prong tops: τ32 lower than for QCD
    t32 = lambda a: a["tau"][:, 2] / a["tau"][:, 1]  # noqa: E731
    assert np.mean(t32(top)) < np.mean(t32(qcd)) - 0.1


def test_same_seed_same_jets():
    s = JetSettings(mpi=False)
    a, _ = generate_chunk("qcd", 3, seed=5, settings=s)
    b, _ = generate_chunk("qcd", 3, seed=5, settings=s)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_generated_files_feed_the_pipeline(tmp_path):
    m = generate_top_tagging(str(tmp_path), n_jets=12, workers=1, chunk_jets=3, seed=2,
                             settings=JetSettings(mpi=False), progress=False)
    assert m["counts"] == {"top": 6, "qcd": 6} and len(m["chunks"]) == 4
    assert m["cross_section_mb"]["qcd"] > m["cross_section_mb"]["top"] > 0
    keys = {"constituents": "constituents", "mass": "mass"}
    specs = [SampleSpec(name=p, files=str(tmp_path / f"{p}_*.h5"), keys=keys, label=int(p == "top"))
             for p in ("qcd", "top")]
    feats, y = next(iter(make_dataset(specs, batch_size=4, epoch="all")))
    assert feats["constituents"].shape == (4, 200, 4)


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path):
    out = tmp_path / "gen"
    # The generating process kills itself half-way through writing its third chunk (so the test
    # does not race the generator: polling for files let a fast run finish before the kill).
    code = ("import os, signal, h5py; import hepflow.physics.pythia_jets as pj; from hepflow.physics.pythia_jets import *\n"
            "from hepflow.io import atomic_path\n"
            "written = []\n"
            "def crash_on_third(path, arrays, attrs):\n"
            "    if len(written) == 2:\n"
            "        with atomic_path(path) as tmp, h5py.File(tmp, 'w') as f:\n"
            "            f.create_dataset('pt', data=arrays['pt'])\n"
            "            os.kill(os.getpid(), signal.SIGKILL)\n"
            "    written.append(path)\n"
            "    write(path, arrays, attrs)\n"
            "write, pj.write_native_chunk = pj.write_native_chunk, crash_on_third\n"
            f"generate_top_tagging({str(out)!r}, n_jets=16, workers=1, chunk_jets=2, seed=3, "
            "settings=JetSettings(mpi=False), progress=False)")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    first = sorted(p.name for p in out.glob("*.h5"))
    assert len(first) == 2 and len(list(out.glob("*.tmp-*"))) == 1  # killed part-way, mid-write
    # the classes are generated chunk by chunk in turn, so what a stopped run left is balanced
    assert abs(sum(n.startswith("top") for n in first) - sum(n.startswith("qcd") for n in first)) <= 1
    m = generate_top_tagging(str(out), n_jets=16, workers=1, chunk_jets=2, seed=3,
                             settings=JetSettings(mpi=False), progress=False)
    assert m["generated_this_run"]["chunks"] == 8 - len(first)
    files = sorted(out.glob("*.h5"))
    assert len(files) == 8 and not list(out.glob("*.tmp-*"))
    pts = np.concatenate([h5py.File(f, "r")["pt"][...] for f in files])
    assert len(pts) == 16 and len(np.unique(pts)) == 16  # none lost, none twice
    # the same seed gives the same jets whether or not the run was interrupted
    ref = tmp_path / "ref"
    generate_top_tagging(str(ref), n_jets=16, workers=2, chunk_jets=2, seed=3,
                         settings=JetSettings(mpi=False), progress=False)
    for f in files:
        with h5py.File(f, "r") as a, h5py.File(ref / f.name, "r") as b:
            np.testing.assert_array_equal(a["constituents"][...], b["constituents"][...])


def test_cli_generates_and_reports(tmp_path, capsys):
    from hepflow.cli.main import main

    out = tmp_path / "tt"
    assert main(["generate", "top-tagging", "--out", str(out), "--jets", "40", "--workers", "1",
                 "--chunk-jets", "20", "--seed", "9", "--report"]) == 0
    text = capsys.readouterr().out
    assert "20 top + 20 QCD jets" in text and "plots:" in text
    assert (out / "report.png").stat().st_size > 10_000 and (out / "manifest.json").exists()
    from hepflow.physics.report import top_tagging_report

    s = top_tagging_report(str(out))
    assert s["top"]["mass_median_gev"] > s["qcd"]["mass_median_gev"] + 40
    assert s["top"]["tau32_mean"] < s["qcd"]["tau32_mean"]
    # re-running the same command generates nothing new
    assert main(["generate", "top-tagging", "--out", str(out), "--jets", "40", "--workers", "1",
                 "--chunk-jets", "20", "--seed", "9"]) == 0
    assert "this run generated 0 jets" in capsys.readouterr().out


def test_reference_format_output(tmp_path):
    pytest.importorskip("tables")
    from hepflow.data.formats import read_reference

    m = generate_top_tagging(str(tmp_path), n_jets=6, workers=1, chunk_jets=3, seed=4,
                             settings=JetSettings(mpi=False), file_format="reference", progress=False)
    assert m["format"] == "reference" and m["counts"] == {"top": 3, "qcd": 3}
    top = read_reference(tmp_path / "top_00000.h5")
    assert top["constituents"].shape == (3, 200, 4) and np.all(top["label"] == 1)
    assert np.all(top["truth_top"][:, 0] > 0)
    native, _ = generate_chunk("top", 3, seed=m["chunks"][1]["seed"], settings=JetSettings(mpi=False))
    np.testing.assert_array_equal(top["constituents"], native["constituents"])


def test_resuming_with_another_seed_is_refused(tmp_path):
    generate_top_tagging(str(tmp_path), n_jets=4, workers=1, chunk_jets=2, seed=7, progress=False,
                         settings=JetSettings(hadronization=False))
    with pytest.raises(ValueError, match="another run"):
        generate_top_tagging(str(tmp_path), n_jets=4, workers=1, chunk_jets=2, seed=8, progress=False,
                             settings=JetSettings(hadronization=False))
    with pytest.raises(ValueError, match="another run"):
        generate_top_tagging(str(tmp_path), n_jets=4, workers=1, chunk_jets=2, seed=7, progress=False,
                             settings=JetSettings(hadronization=False, mpi=False))
    m = generate_top_tagging(str(tmp_path), n_jets=4, workers=1, chunk_jets=2, seed=7, progress=False,
                             settings=JetSettings(hadronization=False))
    assert m["generated_this_run"]["jets"] == 0 and m["counts"] == {"top": 2, "qcd": 2}


def test_gluino_jets_are_contained_400_gev_three_prong_resonances():
    import dataclasses

    from hepflow.physics.pythia_jets import ANOMALY_SETTINGS, PROCESSES, generate_chunk

    settings = dataclasses.replace(ANOMALY_SETTINGS, mpi=False)
    a, info = generate_chunk("gluino", 8, seed=11, settings=settings)
    assert (a["label"] == PROCESSES["gluino"]).all()
    truth = a["truth_top"].astype(np.float64)
    truth_mass = np.sqrt(np.maximum(truth[:, 0] ** 2 - (truth[:, 1:] ** 2).sum(1), 0))
    np.testing.assert_allclose(truth_mass, 400.0, atol=2.0)  # the matched gluino (width 10 MeV)
    assert ((a["pt"] > 800) & (a["pt"] < 1000)).all()
    # the three quarks lie inside the jet: its mass is near the gluino's (FSR and UE move it)
    assert 330 < np.median(a["mass"]) < 480, a["mass"]
    assert info["events"] >= 4  # two gluinos per event at most


def test_generate_jets_validates_processes(tmp_path):
    from hepflow.physics.pythia_jets import JetSettings, generate_jets

    with pytest.raises(ValueError, match="counts must name processes"):
        generate_jets(str(tmp_path), counts={"stop": 10})
    with pytest.raises(ValueError, match="pt_min_gev < pt_max_gev"):
        JetSettings(pt_min_gev=900, pt_max_gev=800)


def test_calorimeter_only_detector_measures_the_same_events_with_towers(jets):
    calo, _ = generate_chunk("top", 40, seed=11, settings=JetSettings(detector="calo"))
    simple = jets["top"]
    # every constituent is a massless tower: neutral, photon or neutral-hadron type, at a tower centre
    real = calo["constituents"][..., 0] > 0
    assert np.all(calo["charge"] == 0) and set(np.unique(calo["type"][real])) <= {1, 2}
    c = calo["constituents"][real]
    m2 = c[:, 0] ** 2 - (c[:, 1:] ** 2).sum(1)
    np.testing.assert_allclose(m2 / c[:, 0] ** 2, 0, atol=1e-3)
    eta = np.arcsinh(c[:, 3] / np.hypot(c[:, 1], c[:, 2]))
    np.testing.assert_allclose(np.mod(eta / 0.05, 1.0), 0.5, atol=1e-2)
    # fewer, coarser constituents than tracks + towers; the top mass peak stays but is measured worse
    assert calo["n_constituents"].mean() < 0.8 * simple["n_constituents"].mean()
    assert 140 < np.median(calo["mass"]) < 200
    with pytest.raises(ValueError, match="detector must be one of"):
        JetSettings(detector="tracker")
