# voxseg developer commands. Every pip install goes through constraints.txt (pins the CPU torch).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
DEMO   ?= voxseg-demo
# Everything the test suite exercises: napari (headless Qt), the web app (+ Playwright), ONNX,
# OpenVINO, bioimage.io, MLflow, Ray. nnU-Net's network package is installed without its dependencies (they pull timm and
# a CUDA torchvision that does not import on a CPU machine; see docs/nnunet.md).
TEST_EXTRAS ?= dev,mlflow,onnx,openvino,bioimageio,ray,dicom,napari-test,web-test

.PHONY: install install-test system-deps demo test deps architecture clean-room lint format clean

# (Re)install when pyproject.toml or constraints.txt change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[$(TEST_EXTRAS)]"
	$(PIP) install --quiet -c constraints.txt --no-deps "dynamic-network-architectures>=0.4.4,<0.5"
	$(PIP) install --quiet -c constraints.txt --no-deps "bioimageio.spec>=0.5.14"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# System packages for the headless napari and browser tests (apt, only when missing; needs root).
system-deps:
	bash tools/install-napari-test-deps.sh
	sh tools/install-browser-test-deps.sh

# The main job on embedded demo data: a phantom mouse CT segmented by the built-in nodule model.
demo: install
	$(BIN)/voxseg demo -o $(DEMO)

# The test suite (CI runs exactly this): lint, declared dependencies, the clean-room install matrix,
# then all tests including the slow end-to-end ones (pytest last: its summary closes the output).
test: install-test system-deps
	$(BIN)/ruff check .
	$(BIN)/deptry src
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/import_cycles.py
	$(BIN)/python tools/clean_room.py --jobs 2
	$(BIN)/python -m pytest

# Every import in src/ is a declared dependency (configuration: [tool.deptry] in pyproject.toml).
deps: install-test
	$(BIN)/deptry src

# The architecture: import-linter's contracts ([tool.importlinter] in pyproject.toml) and no import cycle among files.
architecture: install-test
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/import_cycles.py

# voxseg alone and with each extra alone, each in a fresh venv from the constraints file (a few minutes).
clean-room: install-test
	$(BIN)/python tools/clean_room.py --jobs 2

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache build src/*.egg-info
