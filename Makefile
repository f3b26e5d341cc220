# Every target creates or reuses the virtual environment by itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-quick lint eval-lfw eval-identify clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m facevault.demo

test: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest

test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

eval-lfw: $(STAMP)
	$(VENV)/bin/facevault eval lfw --pairs $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/pairs.txt \
	  --images $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/lfw-deepfunneled --json

eval-identify: $(STAMP)
	$(VENV)/bin/facevault eval identify --images $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/lfw-deepfunneled --json

clean:
	rm -rf $(VENV) facevault-data .pytest_cache
