# Two commands do everything on a fresh machine:
#   make run   - create .venv, train the fast model if none is exported, serve the gateway
#   make test  - create .venv with the dev extra, lint, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_BASE ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
# checkov (security scan in tests/k8s) pins packages that clash with the project's
# (packaging, termcolor...): it gets a venv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION ?= 3.3.30

.PHONY: run train serve test lint checkov system-deps bench bench-gateway bench-rejection protos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,serve,client]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.run-installed
	@if ls -d $(MODEL_BASE)/mnist/[0-9]* >/dev/null 2>&1; then \
		echo "Using the model already exported under $(MODEL_BASE)/mnist"; \
	else \
		$(BIN)/python -m training --profile fast --export-base $(MODEL_BASE); \
	fi
	GATEWAY_MODEL_BASE_PATH=$(MODEL_BASE)/mnist GATEWAY_HOST=$(HOST) GATEWAY_PORT=$(PORT) \
		$(BIN)/python -m serving

train: $(VENV)/.run-installed
	$(BIN)/python -m training --export-base $(MODEL_BASE) $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint checkov
	$(BIN)/python -m pytest $(PYTEST_ARGS)

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

# Debian packages some tests drive: the browser, wrk for benchmarks, podman (runc,
# debootstrap) to build and run the gateway image (scripts/images.sh), and the fonts the
# training job renders its "not a digit" letters and symbols with (training/negatives.py).
system-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
		chromium wrk podman runc debootstrap \
		fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/ladder.py

# Gateway throughput vs its baselines (wrk from system-deps); rewrites docs/benchmarks.md.
bench-gateway: $(VENV)/.dev-installed
	$(BIN)/python bench/gateway.py

# Non-digits rejected and digits accepted, through a gateway serving $(MODEL_BASE) (make
# train); writes docs/rejection.md. ARGS: more, e.g. --count 2000.
bench-rejection: $(VENV)/.dev-installed
	$(BIN)/python bench/rejection.py --export-base $(MODEL_BASE) --write $(ARGS)

# The gateway's own TF Serving messages, generated from their .proto (after editing it).
PROTOS := serving/backends/tfserving/protos
protos: $(VENV)/.dev-installed
	$(BIN)/python -m grpc_tools.protoc -I $(PROTOS) --python_out=$(PROTOS) $(PROTOS)/tfserving.proto

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) runs test-artifacts .pytest_cache .ruff_cache
