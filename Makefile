# amnet: `make demo` runs the whole pipeline on the built-in dataset; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install test test-fast lint demo stack-up stack-down compile clean images

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/amnet stack up
	$(BIN)/amnet run --local

stack-up: $(STAMP)
	$(BIN)/amnet stack up

stack-down: $(STAMP)
	$(BIN)/amnet stack down

compile: $(STAMP)
	$(BIN)/amnet pipeline compile --out amnet_pipeline.yaml

images:
	docker build -f images/cpu/Dockerfile -t amnet:$$($(BIN)/python -c 'import amnet; print(amnet.__version__)') .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
