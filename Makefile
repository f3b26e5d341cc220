# Every target creates or reuses the virtual environment by itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo demo-cli test test-quick test-milvus-server lint eval-lfw eval-identify clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: load the demo gallery into ./facevault-data, print an admin key, and serve the API and
# the web UI on http://127.0.0.1:$${PORT:-8000}/ until Ctrl-C.
demo: $(STAMP)
	$(VENV)/bin/facevault serve --demo --host 127.0.0.1 --port $${PORT:-8000}

# The same demo job through the CLI only, without starting a server.
demo-cli: $(STAMP)
	$(PY) -m facevault.demo

test: $(STAMP)
	bash .ci/install-browser.sh || echo "chromium unavailable: browser tests will be skipped"
	$(PY) -m ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

# A real Milvus standalone server, only inside a loopback-only network namespace (root; ~10 min).
test-milvus-server: $(STAMP)
	bash tests/milvus_server/run.sh

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m ruff format --check src tests bench

eval-lfw: $(STAMP)
	$(VENV)/bin/facevault eval lfw --pairs $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/pairs.txt \
	  --images $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/lfw-deepfunneled --json

eval-identify: $(STAMP)
	$(VENV)/bin/facevault eval identify --images $${FACEVAULT_TEST_DATA:-../shared/data}/lfw/lfw-deepfunneled --json

clean:
	rm -rf $(VENV) facevault-data .pytest_cache
