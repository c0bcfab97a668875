# Fresh machine with only Python >= 3.11: `make demo` or `make test` creates .venv and installs everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench bench-demo install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hotspot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/panel_backtest.py

bench-demo: $(STAMP)
	$(BIN)/python benchmarks/demo.py

clean:
	rm -rf $(VENV) outputs mlruns mlflow.db optuna.db hotspot.db .pytest_cache
