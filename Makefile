# Entry points; README.md explains them. Build caches live outside the clone.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv controlplane helm cluster-up cluster-down demo lint test test-unit bench crd

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The control plane and kwok (its simulated nodes), each cached outside the clone.
controlplane:
	hack/build-controlplane
	hack/build-kwok

# helm for the chart's tests, from its Go module (cached like the control plane).
helm:
	hack/build-helm

cluster-up: controlplane
	hack/cluster up

cluster-down:
	hack/cluster down

demo: venv controlplane helm
	hack/demo

lint: venv
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/mypy
	PYTHONPATH=operator $(BIN)/lint-imports

test-unit: venv
	$(BIN)/pytest tests/unit

# The whole suite: lint, unit, and e2e against the local control plane
# (started by the test session when it is not already running).
test: venv controlplane helm lint
	$(BIN)/pytest

crd: venv
	$(BIN)/agent-operator crd > crds/agentdeployments.agents.dev.yaml
	$(BIN)/agent-operator crd spendrecords > crds/spendrecords.agents.dev.yaml
	$(BIN)/python hack/chartgen.py
