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

# Both images, tagged as components/images.py names them: $$AMNET_IMAGE_REGISTRY/amnet:VERSION[-cuda].
CONTAINER ?= docker
images: $(STAMP)
	$(CONTAINER) build -f images/cpu/Dockerfile -t $$($(BIN)/python -c 'from amnet_components.images import PROJECT_IMAGE; print(PROJECT_IMAGE)') .
	$(CONTAINER) build -f images/gpu/Dockerfile -t $$($(BIN)/python -c 'from amnet_components.images import GPU_IMAGE; print(GPU_IMAGE)') .

.PHONY: images-lint
images-lint: $(STAMP)
	$(BIN)/hadolint images/cpu/Dockerfile images/gpu/Dockerfile

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
