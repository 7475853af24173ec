# Two commands on a fresh machine: `make quickstart` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; a GPU user overrides it: make TORCH_SPEC="torch==2.13.0" quickstart with their index.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv quickstart test test-fast bench lint clean-data

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned in the same command so pip never resolves a multi-GB CUDA build.
	$(PY) -m pip install -q "$(TORCH_SPEC)" -e ".[dev,spark]"
	touch $@

venv: $(VENV)/.installed

quickstart: venv
	$(PY) scripts/quickstart.py experiment=default

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) scripts/benchmark.py

lint: venv
	$(VENV)/bin/ruff check foundation scripts tests

clean-data:
	rm -rf data outputs checkpoints/*/
