# Everything a developer or CI runs. `make help` lists the targets.
include versions.env
export

SHELL := /usr/bin/env bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
export PATH := $(ROOT)/.cache/bin:$(VENV)/bin:$(PATH)
# The cluster tests/e2e run against. Deliberately not $KUBECONFIG, so that `make test`
# never touches whatever cluster your shell points at: the default is the local
# control plane (`make up`); pass E2E_KUBECONFIG=... to test another (kind-e2e does).
LOCAL_KUBECONFIG := $(ROOT)/.cache/run/kubeconfig
E2E_KUBECONFIG ?= $(LOCAL_KUBECONFIG)

# chart/README.md is generated: the values table from values.yaml's `# -- ` comments,
# the prose from chart/README.md.gotmpl.
HELM_DOCS := helm-docs --chart-search-root chart --sort-values-order file --log-level warning

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: ## Build and install every pinned tool into .cache/bin and .venv (cold: see README)
	hack/install.sh all

.PHONY: up
up: install ## Start the local control plane, cert-manager and the webhook (no Docker)
	$(PY) -m localcp up

.PHONY: down
down: ## Stop everything `make up` started
	$(PY) -m localcp down

.PHONY: lint
lint: ## ruff, mypy, import contracts, helm lint, actionlint, hadolint, chart/README.md up to date
	ruff check .
	ruff format --check .
	mypy
	lint-imports --cache-dir .cache/import-linter
	helm lint --strict chart
	actionlint
	hadolint Dockerfile
	@$(HELM_DOCS) --dry-run | diff -u chart/README.md - \
		|| { echo 'chart/README.md is stale: run `make docs` and commit it' >&2; exit 1; }

.PHONY: docs
docs: ## Regenerate chart/README.md with helm-docs (values.yaml, chart/README.md.gotmpl)
	$(HELM_DOCS)

.PHONY: test-unit
test-unit: ## Unit tests: the admission core, the server, the chart's rendered manifests
	$(PY) -m pytest tests/unit

.PHONY: test-e2e
test-e2e: $(if $(filter $(LOCAL_KUBECONFIG),$(E2E_KUBECONFIG)),up) ## End-to-end tests against E2E_KUBECONFIG (default: `make up`'s cluster)
	KUBECONFIG=$(E2E_KUBECONFIG) $(PY) -m pytest -m e2e tests/e2e

.PHONY: test
test: install lint test-unit test-e2e ## Install what is missing, then lint, unit and e2e tests

.PHONY: bench
bench: up ## Benchmarks: the server beside its ceiling (busy, then paced), each attack on the edge, Pod-creation latency per setup, a 2,000-Pod backfill
	$(PY) -m bench.server
	$(PY) -m bench.attacks
	$(PY) -m bench.paced
	KUBECONFIG=$(LOCAL_KUBECONFIG) $(PY) -m bench.modes
	KUBECONFIG=$(LOCAL_KUBECONFIG) $(PY) -m bench.backfill

.PHONY: bench-peers
bench-peers: ## Opt-in, after `make up`: build Kyverno and Gatekeeper (first time about 30 min), time them beside ours
	@test -s $(LOCAL_KUBECONFIG) || { echo 'bench-peers runs against the local cluster: run `make up` first' >&2; exit 1; }
	hack/install.sh peers
	KUBECONFIG=$(LOCAL_KUBECONFIG) $(PY) -m bench.peers

.PHONY: kind-e2e
kind-e2e: ## Build the image, install it with cert-manager on kind, run tests/e2e (Docker)
	hack/kind-e2e.sh $(KIND_E2E_FLAGS)
