# voxseg developer commands. Every pip install goes through constraints.txt (pins the CPU torch).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
DEMO   ?= voxseg-demo

.PHONY: install demo test lint format clean

# (Re)install when pyproject.toml or constraints.txt change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job on embedded demo data: make a phantom mouse CT dataset, check it, picture it.
demo: install
	rm -rf $(DEMO)
	$(BIN)/voxseg dataset phantom mouse-lung-ct $(DEMO)/dataset --cases 4 --seed 0
	$(BIN)/voxseg dataset verify $(DEMO)/dataset
	$(BIN)/voxseg dataset show $(DEMO)/dataset --case mouse_lung_ct_000 -o $(DEMO)/mouse_lung_ct_000.png
	@echo "demo: dataset in $(DEMO)/dataset, picture in $(DEMO)/mouse_lung_ct_000.png"

# The test suite (CI runs exactly this): lint, then all tests including the slow end-to-end ones.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache build src/*.egg-info
