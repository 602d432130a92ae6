# hepflow: make demo | make test  (both install into .venv first when needed)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hepflow-installed
EXTRAS ?= test,pythia,formats,tfds,onnx,root

.PHONY: install install-peers demo test test-slow bench results results-gpu results-jets results-towers results-calo results-calogan results-generators results-anomaly clean

install: $(STAMP)

# Re-installs only when the package metadata changed; hepflow itself is editable.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# The [peers] extra (energyflow, for `hepflow evaluate --peer energyflow_pfn`) lives in its own venv,
# .venv-peers, so that .venv stays clean (`pip check`) with one TensorFlow: energyflow builds its PFN with
# tf-keras, whose metadata asks for the `tensorflow` distribution (the GPU build), which would go in beside
# tensorflow-cpu. There tf-keras is installed without its dependencies (it only imports `tensorflow`,
# which tensorflow-cpu provides), so `pip check` in .venv-peers names that one requirement. energyflow
# imports Wasserstein, whose PyPI wheels are built against NumPy 1 and fail to import beside NumPy 2, so it
# is rebuilt from source against the venv's NumPy (about 20 s).
PEERS_VENV  := .venv-peers
PEERS_PY    := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.hepflow-installed

install-peers: $(PEERS_STAMP)

$(PEERS_STAMP): setup.cfg pyproject.toml
	@test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --upgrade pip
	$(PEERS_PY) -m pip install --quiet -e ".[$(EXTRAS),peers]"
	$(PEERS_PY) -m pip install --quiet --no-deps "tf-keras==2.21.0"
	$(PEERS_PY) -m pip install --quiet setuptools wheel
	$(PEERS_PY) -m pip install --quiet --no-cache-dir --no-build-isolation --no-binary wasserstein --no-deps --force-reinstall "wasserstein==1.0.1"
	$(PEERS_PY) -c "import energyflow.archs"
	@touch $(PEERS_STAMP)

demo: install
	$(VENV)/bin/hepflow demo

test: install
	$(PY) -m pytest -q

# the slow tests run in .venv-peers, which has everything .venv has plus the peer package
test-slow: install-peers
	$(PEERS_PY) -m pytest -q -m slow

bench: install
	$(PY) tools/bench_pipeline.py

# docs/results.md: every tagger on 200k generated jets, then scored again on 100k independent test jets
# (90k of them QCD) to measure rejections near 1000: seed 2, on which the CNN ensemble was chosen, and
# seed 3, generated afterwards to check it (hours on 2 cores; resumes generation)
TAGGERS := high_level_dnn pfn pfn_id efn deeptop_cnn deeptop_cnn_colour deeptop_cnn_colour_jet deeptop_cnn_colour_gev \
	macaluso_shih_cnn particlenet_lite particlenet
CNN_ENSEMBLE := --ensemble cnn_ensemble=deeptop_cnn_colour,deeptop_cnn_colour_jet,deeptop_cnn_colour_gev
results: install
	$(VENV)/bin/hepflow generate top-tagging --out data/top_tagging --jets 200000 --seed 1 --report
	for t in $(TAGGERS); do $(VENV)/bin/hepflow train configs/top_tagging/$$t.yaml --run-dir runs/top_tagging/$$t --overwrite || exit 1; done
	$(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging/,$(TAGGERS)) $(CNN_ENSEMBLE) --out runs/top_tagging/report --markdown
	for seed in 2 3; do \
	  $(VENV)/bin/hepflow generate jets --preset top_tagging --out data/top_tagging_test$${seed#2} --process qcd=90000 --process top=10000 --chunk-jets 1000 --seed $$seed || exit 1; \
	  $(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging/,$(TAGGERS)) $(CNN_ENSEMBLE) --test-dir data/top_tagging_test$${seed#2} \
	    --out runs/top_tagging/report_test100k$${seed#2} --markdown --efficiencies 0.3 0.5 0.7 || exit 1; \
	done

# docs/results.md, "Macaluso & Shih's CNN on a GPU": three seeds of the M-S CNN on colour images, scored with the
# colour CNNs of `make results` (run it first) and their means on both 100k test samples (needs a GPU that
# TensorFlow sees: ~2 minutes each on an H100, a day on 2 cores; `hepflow offload` trains them on a GPU
# machine that has Keras but no TensorFlow, see docs/training.md)
MS_RUNS := macaluso_shih_cnn_colour macaluso_shih_cnn_colour_s6 macaluso_shih_cnn_colour_s7
MS_ENSEMBLES := --ensemble ms_cnn_ensemble=macaluso_shih_cnn_colour,macaluso_shih_cnn_colour_s6,macaluso_shih_cnn_colour_s7 \
	--ensemble six_cnn_ensemble=deeptop_cnn_colour,deeptop_cnn_colour_jet,deeptop_cnn_colour_gev,macaluso_shih_cnn_colour,macaluso_shih_cnn_colour_s6,macaluso_shih_cnn_colour_s7
results-gpu: install
	$(VENV)/bin/python -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 'results-gpu: TensorFlow sees no GPU here')"
	$(VENV)/bin/hepflow train configs/top_tagging/macaluso_shih_cnn_colour.yaml --run-dir runs/top_tagging/macaluso_shih_cnn_colour --overwrite
	for s in 6 7; do $(VENV)/bin/hepflow train configs/top_tagging/macaluso_shih_cnn_colour.yaml --set seed=$$s \
	  --set name=macaluso_shih_cnn_colour_s$$s --run-dir runs/top_tagging/macaluso_shih_cnn_colour_s$$s --overwrite || exit 1; done
	for seed in 2 3; do $(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging/,deeptop_cnn_colour deeptop_cnn_colour_jet \
	  deeptop_cnn_colour_gev $(MS_RUNS)) $(CNN_ENSEMBLE) $(MS_ENSEMBLES) --test-dir data/top_tagging_test$${seed#2} \
	  --out runs/top_tagging/report_gpu_test100k$${seed#2} --markdown --efficiencies 0.3 0.5 0.7 || exit 1; done

# docs/results.md, "more training jets": the DeepTop colour CNN (GeV images) on the first 400k, 600k and all 1.2M
# jets of one sample (80 % of each for training; its chunks are made in turn, so any prefix is balanced; smaller
# samples are hard links into the big one), scored with the 160k run on both 100k test samples. Generation
# (~3 h on 2 cores) and training (~5 h) both resume; the cosine decay lasts the 15 epochs of each. A second
# 1.2M run (training seed 4) checks the seed spread, and jets1200_ensemble is the mean of the two 1.2M runs.
# PFN-ID trained on the same 960k jets (20 epochs, cosine decay) is scored against the BDT fitted on that split.
JET_SIZES := 400 600 1200
results-jets: install
	$(VENV)/bin/hepflow generate top-tagging --out data/top_tagging_1200k --jets 1200000 --seed 1
	for n in 400 600; do mkdir -p data/top_tagging_$${n}k; for i in $$(seq -f %05g 0 $$((n / 2 - 1))); do for c in qcd top; do \
	  [ -e data/top_tagging_$${n}k/$${c}_$$i.h5 ] || ln data/top_tagging_1200k/$${c}_$$i.h5 data/top_tagging_$${n}k/ || exit 1; done; done; done
	for n in $(JET_SIZES); do [ -f runs/top_tagging/deeptop_cnn_colour_gev_$${n}k/model.keras ] || \
	  $(VENV)/bin/hepflow train configs/top_tagging/deeptop_cnn_colour_gev.yaml --set data.dir=data/top_tagging_$${n}k \
	  --set name=deeptop_cnn_colour_gev_$${n}k --set optimizer.learning_rate.decay_steps=$$((n * 375 / 4)) \
	  --set training.early_stopping.patience=15 --run-dir runs/top_tagging/deeptop_cnn_colour_gev_$${n}k --overwrite || exit 1; done
	[ -f runs/top_tagging/deeptop_cnn_colour_gev_1200k_s4/model.keras ] || \
	  $(VENV)/bin/hepflow train configs/top_tagging/deeptop_cnn_colour_gev.yaml --set data.dir=data/top_tagging_1200k \
	  --set name=deeptop_cnn_colour_gev_1200k_s4 --set seed=4 --set optimizer.learning_rate.decay_steps=112500 \
	  --set training.early_stopping.patience=15 --run-dir runs/top_tagging/deeptop_cnn_colour_gev_1200k_s4 --overwrite
	[ -f runs/top_tagging/pfn_id_1200k/model.keras ] || \
	  $(VENV)/bin/hepflow train configs/top_tagging/pfn_id.yaml --set data.dir=data/top_tagging_1200k \
	  --set name=pfn_id_1200k --set optimizer.learning_rate.decay_steps=75000 \
	  --set training.early_stopping.patience=20 --run-dir runs/top_tagging/pfn_id_1200k --overwrite
	for seed in 2 3; do $(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging/,deeptop_cnn_colour_gev \
	  $(foreach n,$(JET_SIZES),deeptop_cnn_colour_gev_$(n)k) deeptop_cnn_colour_gev_1200k_s4) \
	  --ensemble jets_ensemble=deeptop_cnn_colour_gev_400k,deeptop_cnn_colour_gev_600k,deeptop_cnn_colour_gev_1200k \
	  --ensemble jets1200_ensemble=deeptop_cnn_colour_gev_1200k,deeptop_cnn_colour_gev_1200k_s4 \
	  --test-dir data/top_tagging_test$${seed#2} --out runs/top_tagging/report_jets_test100k$${seed#2} \
	  --markdown --efficiencies 0.3 0.5 0.7 || exit 1; done
	$(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging/,deeptop_cnn_colour_gev_1200k deeptop_cnn_colour_gev_1200k_s4 \
	  pfn_id_1200k) --ensemble jets1200_ensemble=deeptop_cnn_colour_gev_1200k,deeptop_cnn_colour_gev_1200k_s4 \
	  --test-dir data/top_tagging_test --test-dir data/top_tagging_test3 --out runs/top_tagging/report_jets1200_test200k \
	  --markdown --efficiencies 0.3 0.5 0.7

# docs/results.md, second table: calorimeter-only jets (towers, no tracks; about 1 hour on 2 cores)
TOWER_TAGGERS := high_level_dnn pfn deeptop_cnn
results-towers: install
	$(VENV)/bin/hepflow generate top-tagging --out data/top_tagging_calo --jets 100000 --seed 1 --detector calo --report
	for t in $(TOWER_TAGGERS); do $(VENV)/bin/hepflow train configs/top_tagging/$$t.yaml --set data.dir=data/top_tagging_calo --run-dir runs/top_tagging_calo/$$t --overwrite || exit 1; done
	$(VENV)/bin/hepflow evaluate $(addprefix runs/top_tagging_calo/,$(TOWER_TAGGERS)) --out runs/top_tagging_calo/report --markdown

# docs/calorimeter.md: e/π classification and e+ energy regression on 30k showers per particle
CALO := epi_shower_shapes_dnn epi_cnn gammapi_cnn
results-calo: install
	$(VENV)/bin/hepflow generate calo-showers --out data/calo_showers --showers 30000
	for t in $(CALO) eplus_energy_cnn; do $(VENV)/bin/hepflow train configs/calo/$$t.yaml --run-dir runs/calo/$$t --overwrite || exit 1; done
	$(VENV)/bin/hepflow evaluate runs/calo/epi_shower_shapes_dnn runs/calo/epi_cnn --out runs/calo/epi_report --markdown --efficiencies 0.9 0.95
	$(VENV)/bin/hepflow evaluate runs/calo/gammapi_cnn --out runs/calo/gammapi_report --markdown --efficiencies 0.9 0.95
	$(VENV)/bin/hepflow evaluate runs/calo/eplus_energy_cnn

# the CaloGAN-style generator on the e+ showers of results-calo (about 25 minutes on 2 cores)
results-calogan: install
	$(VENV)/bin/hepflow train configs/calo/eplus_calogan.yaml --run-dir runs/calo/eplus_calogan --overwrite
	$(VENV)/bin/hepflow evaluate runs/calo/eplus_calogan
	$(VENV)/bin/python tools/bench_calogan.py --run runs/calo/eplus_calogan

# docs/calorimeter.md, the generator table: CaloFlow, cVAE and the CaloGAN with occupancy for e+, γ and π+
# (about 2 hours on 2 cores; needs data/calo_showers of results-calo)
GENERATORS := calo_flow_three_particles calo_vae_three_particles calogan_occupancy_three_particles
results-generators: install
	$(VENV)/bin/hepflow train configs/calo/calo_flow_three_particles.yaml --run-dir runs/calo/calo_flow_three_particles --overwrite
	$(VENV)/bin/hepflow train configs/calo/calo_vae_three_particles.yaml --run-dir runs/calo/calo_vae_three_particles --overwrite --set training.epochs=12
	$(VENV)/bin/hepflow train configs/calo/calogan_occupancy_three_particles.yaml --run-dir runs/calo/calogan_occupancy_three_particles --overwrite
	for g in $(GENERATORS); do $(VENV)/bin/hepflow evaluate runs/calo/$$g || exit 1; done
	$(VENV)/bin/python tools/bench_calogan.py $(addprefix --run runs/calo/,$(GENERATORS))

# docs/anomaly.md: QCD, top and gluino jets (about 25 min on 2 cores), then every anomaly study
results-anomaly: install
	$(VENV)/bin/hepflow generate jets --out data/anomaly --process qcd=30000 --process gluino=6000 --process top=6000
	$(VENV)/bin/hepflow study anomaly --data data/anomaly --out runs/anomaly

clean:
	rm -rf $(VENV) $(PEERS_VENV) demo_data bench_data runs *.egg-info
