# descend — the two set-up commands are `make demo` and `make test`; both work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: demo test bench lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files re-run the install when pyproject.toml or the constraints change.
$(VENV)/.installed-base: $(PY) pyproject.toml constraints.txt
	@echo "descend: installing descend and its dependencies (torch 2.13 CPU, web lab) into $(VENV)"
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(PY) pyproject.toml constraints.txt
	@echo "descend: installing descend with its test dependencies into $(VENV)"
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(VENV)/bin/descend demo $(DEMO_ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
