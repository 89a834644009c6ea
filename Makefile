# Commands for a fresh machine: `make demo`, `make test` (the suite without slow-marked cases,
# under 10 minutes on 2 cores) and `make test-all` (everything, as CI runs it). All create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
PYTEST_ARGS ?=

.PHONY: demo test test-all install install-test clean docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Stamp files record that the install matches pyproject.toml; editing it triggers a reinstall.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

# The tests also install the example method plug-in (examples/ackd-bench-pkt, an entry point).
$(VENV)/.installed-test: pyproject.toml examples/ackd-bench-pkt/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	$(BIN)/python -m pip install --no-deps -e examples/ackd-bench-pkt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

DEMO_METHODS ?= student-only kd dkd sembridge
DEMO_ARCH ?= resnet18
DEMO_PROFILE ?= smoke
RESULTS ?= results/demo

# Builds (or verifies) the demo dataset, trains the MS teacher once, runs four methods on the
# RGB student and prints the results table.
demo: install
	$(BIN)/ackd-bench build-dataset --catalog demo --out $(DATA)/demo
	for m in $(DEMO_METHODS); do \
	  $(BIN)/ackd-bench run --method $$m --arch $(DEMO_ARCH) --dataset $(DATA)/demo \
	    --profile $(DEMO_PROFILE) --out $(RESULTS) || exit 1; \
	done
	$(BIN)/ackd-bench table $(RESULTS) --plot $(RESULTS)/table.png

# A later `-m` in PYTEST_ARGS replaces the default selection.
test: install-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/): strict, so any warning fails; the site goes to build/site.
# Installs the docs extra when its packages are missing. NO_MKDOCS_2_WARNING silences Material's banner.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: install
	$(BIN)/python -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || $(BIN)/python -m pip install -e '.[docs]'
	$(DOCS_ENV) $(BIN)/python -m mkdocs build --strict

docs-serve: docs
	$(DOCS_ENV) $(BIN)/python -m mkdocs serve

clean:
	rm -rf $(DATA)/demo $(RESULTS) .pytest_cache
