# hepflow: make demo | make test  (both install into .venv first when needed)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hepflow-installed
EXTRAS ?= test,pythia,formats,tfds

.PHONY: install demo test test-slow bench clean

install: $(STAMP)

# Re-installs only when the package metadata changed; hepflow itself is editable.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/hepflow demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) tools/bench_pipeline.py

clean:
	rm -rf $(VENV) demo_data bench_data *.egg-info
