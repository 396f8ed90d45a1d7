# Two commands set everything up on a fresh machine:
#   make demo   installs into .venv and runs the bundled quickstart study
#   make test   runs the test suite (installs first if needed)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch requirement installed before the project. Here it resolves to the
# CPU build on local disk; on a CUDA machine PyPI's torch==2.13.0 is a CUDA build.
# Override for another CUDA flavour, e.g.
#   make install TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
OUT    ?= results/quickstart

.PHONY: install demo test test-all lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(BIN)/robustness run --out $(OUT)

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m "not gpu"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
