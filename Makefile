# amnet: `make demo` runs the whole pipeline on the built-in dataset; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install test test-fast lint demo stack-up stack-down compile clean images images-gpu base-image demo-containers lock \
        lock-hashes dist

# Installs exactly the versions in requirements.lock (pip constraints), the same ones CI and images use:
# amnet with `stack` (SeaweedFS and the MLflow server: `amnet stack up`, make demo), `cluster` (the
# Kubeflow SDK: --train-nodes > 1) and `dev` (the test tools).
$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,stack,cluster]'
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
	$(BIN)/amnet run --local --config configs/demo.yaml

stack-up: $(STAMP)
	$(BIN)/amnet stack up

stack-down: $(STAMP)
	$(BIN)/amnet stack down

compile: $(STAMP)
	$(BIN)/amnet pipeline compile --out amnet_pipeline.yaml

# The CPU image, tagged as components/images.py names it: $$AMNET_IMAGE_REGISTRY/amnet:c-<12 hex>, a digest of
# the Dockerfiles, sources and lock (the tag the compiled pipeline pins), plus the alias .../amnet:VERSION.
# images/build.py picks a base that works here (the public python:3.11 slim, else `make base-image`'s Debian
# one) and a torch source (PyTorch CPU index, else a local wheel mirror, else PyPI), then prints build time,
# size and what dominates it. Override: make images BASE_IMAGE=... TORCH_SOURCE=cpu-index|local|pypi|URL
IMAGE_TAG = $$($(BIN)/python -c 'from amnet_components.images import PROJECT_IMAGE; print(PROJECT_IMAGE)')
GPU_IMAGE_TAG = $$($(BIN)/python -c 'from amnet_components.images import GPU_IMAGE; print(GPU_IMAGE)')
images: $(STAMP)
	$(BIN)/python images/build.py --kind cpu --tag $(IMAGE_TAG)  # images/cpu/Dockerfile -> PROJECT_IMAGE

# The CUDA image (images/gpu/Dockerfile -> GPU_IMAGE): where its pytorch/pytorch base can be pulled.
images-gpu: $(STAMP)
	$(BIN)/python images/build.py --kind gpu --tag $(GPU_IMAGE_TAG)

# The Debian bookworm Python base (mmdebstrap + docker import) for machines that cannot pull python:3.11.
base-image:
	images/base/build-base.sh amnet-base:bookworm-py3.11

# The whole demo pipeline with every task in the CPU image (kfp.local DockerRunner).
demo-containers: images
	$(BIN)/amnet stack up
	$(BIN)/amnet run --local --containers --config configs/demo.yaml

.PHONY: images-lint
images-lint: $(STAMP)
	$(BIN)/hadolint images/cpu/Dockerfile images/gpu/Dockerfile

# Re-resolve the lock from pyproject.toml (every extra) in a throwaway venv (after changing a dependency),
# then requirements-image.lock: the CPU image's dependencies with their SHA-256 (images/hash_lock.py, PyPI).
# requirements.lock itself carries no hashes: pip's hash-checking mode refuses the editable install.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev,stack,cluster,server]'
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable --all \
	  | grep -v '^pip==\|^setuptools==\|^wheel=='; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	.lock-venv/bin/python images/hash_lock.py && rm -rf .lock-venv

# Only the hashes (requirements-image.lock) for the current requirements.lock.
lock-hashes: $(STAMP)
	$(BIN)/python images/hash_lock.py

# The amnet wheel (dist/), with the images' content tag stored in it: a pipeline compiled where amnet is
# installed from this wheel pins the images `make images images-gpu` builds from the same sources.
dist: $(STAMP)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
