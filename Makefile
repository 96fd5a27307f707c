# covid-realtime: the two commands are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export COVID_TOOLS_DIR ?= /opt/covid-realtime

.PHONY: help setup up test lint build release dashboard demo rollout-demo bench fuzz soak clean-local

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install what the project needs (idempotent; quick when present)
	@scripts/setup.sh

up: ## Run the whole pipeline locally: dashboard http://127.0.0.1:8080, ingest :8081 (gRPC) and :8082 (Redis)
	@SETUP_SKIP_BROWSER=1 scripts/setup.sh
	@$(MAKE) --no-print-directory release dashboard
	target/release/stack up

test: setup ## Lint, then every test, against real Redis, the MongoDB-compatible server and Chromium
	@scripts/test.sh

lint: ## rustfmt, clippy and shellcheck (warnings are errors), as make test runs them
	cargo fmt --all --check
	shellcheck scripts/*.sh fuzz/run.sh .ci/run
	cargo clippy --workspace --all-targets --quiet -- -D warnings

build: ## Debug build of every binary
	cargo build --workspace --bins

release: ## Optimised build of every binary (what make up and the benchmarks run)
	cargo build --release --workspace --bins

dashboard: ## Build the browser dashboard into dashboard/dist
	@cd dashboard && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build --silent

demo: ## With `make up` running: load both ingest ports for 2 minutes so the dashboard fills
	@test -x target/release/loadtest || $(MAKE) --no-print-directory release
	target/release/loadtest --rate 40 --batch 5 --duration 2m --token "$$(cat $${STACK_DATA_DIR:-.local/stack}/ingest-token)" \
	  --target grpc=http://127.0.0.1:$${INGEST_GRPC_PORT:-8081} --target redis=http://127.0.0.1:$${INGEST_REDIS_PORT:-8082}

rollout-demo: ## Rehearse the rollouts locally (nginx weighted from the overlays' traffic blocks), then the automated canary: healthy v2 promoted, broken v2 rolled back
	@SETUP_SKIP_BROWSER=1 scripts/setup.sh
	cargo run -q -p knative-manifests --bin rollout-rehearsal

bench: ## Run every benchmark on this machine; rewrites BENCHMARKS.md and bench/results/
	@scripts/setup.sh
	@$(MAKE) --no-print-directory release dashboard
	target/release/bench

fuzz: ## Fuzz every parser for FUZZ_SECONDS (default 20) each (installs cargo-fuzz when missing)
	@fuzz/run.sh

soak: ## Fault soak in release: every fault under load for FAULT_SOAK_SECS (default 300) each; table in target/faults-report.md
	@SETUP_SKIP_BROWSER=1 scripts/setup.sh
	cargo build --release --workspace --bins
	FAULT_SOAK_SECS=$${FAULT_SOAK_SECS:-300} cargo test --release -p stack --test faults every_fault_under_load -- --nocapture

clean-local: ## Delete the local stack's data (.local/)
	rm -rf .local
