# Two set-up commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP)-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP)-test: pyproject.toml $(STAMP)-base
	$(BIN)/pip install -q -e ".[test]"
	touch $@

$(STAMP)-plot: pyproject.toml $(STAMP)-base
	$(BIN)/pip install -q -e ".[plot]"
	touch $@

demo: $(STAMP)-plot          ## LeNet-5 on the embedded handwritten digits: train, checkpoint, reload, curves PNG
	$(BIN)/suanli demo

test: $(STAMP)-test          ## the whole suite (slow-marked tests included unless SUANLI_SKIP_SLOW=1)
	$(BIN)/python -m pytest $(if $(SUANLI_SKIP_SLOW),-m "not slow",)

test-fast: $(STAMP)-test
	$(BIN)/python -m pytest -m "not slow" -x

bench: $(STAMP)-test         ## side-by-side benchmarks against torch
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
