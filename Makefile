# Connectability: `make run` starts everything, `make test` runs every test.
# Needs only the Rust toolchain (protoc is vendored). `make lint` also needs buf
# (pip install buf-bin); the README lists the optional tools.

CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(HOME)/.cache/connectability/target

.PHONY: run test test-embedded smoke chaos chaos-quick deploy-check deploy-run lint one-crypto-provider import-graph fmt clippy buf-lint bench bench-quick proto clean-data

## Build and start every service in one process on 127.0.0.1:50051 (SQLite in .data/, in-process events).
run:
	$(CARGO) run -p connectability -- dev

## Run every test: unit tests, and the suites on sqlite+inproc and postgres+nats.
test:
	@scripts/backends.sh
	@# The trace suite runs services as processes of this binary.
	$(CARGO) build -p connectability
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found (cargo install cargo-nextest); using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## Only the embedded backend (no Postgres or NATS needed).
test-embedded:
	$(CARGO) nextest run --workspace -E 'not test(/postgres_nats/)'

## Every service as its own process on Postgres + NATS, one connection end to end (needs grpcurl).
smoke:
	$(CARGO) build -p connectability
	scripts/smoke-production.sh

## The fault suite: its own Postgres and NATS, every service as a process (two replicas of the
## sync services and notification), SIGKILLs, NATS and Postgres restarts, a relay crash;
## fails unless nothing is lost or doubled. CHAOS_SEED=N replays a run.
chaos:
	$(CARGO) build -p connectability -p connectability-tests --bin connectability --bin chaos
	CONNECTABILITY_BIN=$(CARGO_TARGET_DIR)/debug/connectability $(CARGO_TARGET_DIR)/debug/chaos

## The fault suite bounded for CI: 20 connections, 10,400 copies, 24 kills.
chaos-quick:
	$(CARGO) build -p connectability -p connectability-tests --bin connectability --bin chaos
	CONNECTABILITY_BIN=$(CARGO_TARGET_DIR)/debug/connectability $(CARGO_TARGET_DIR)/debug/chaos --quick

## Render every overlay (kubectl kustomize) and check it: Kubernetes 1.31 schemas
## (pip install kubernetes-validate), a Deployment per service, only env vars the binaries
## read, gRPC probes naming served health entries.
deploy-check:
	$(CARGO) build -p connectability
	CONNECTABILITY_BIN=$(CARGO_TARGET_DIR)/debug/connectability python3 scripts/deploy-check.py

## Run both overlays: every rendered Deployment and Job as local processes with its exact
## command, args, env and mounted files (each Service on its own loopback address, named in
## a private /etc/hosts: needs root), real Postgres, NATS (deploy/nats/nats.conf), an SMTP
## sink, an identity provider and a cluster token issuer behind them; waits for every
## readiness probe, then drives the smoke workload through them.
deploy-run:
	$(CARGO) build -p connectability
	CONNECTABILITY_BIN=$(CARGO_TARGET_DIR)/debug/connectability python3 scripts/deploy-run.py

## fmt, clippy (warnings are errors), buf lint, and one rustls crypto provider (ring).
lint: fmt clippy buf-lint one-crypto-provider import-graph

## Nothing under libs/ imports a service (scripts/check-imports.py).
import-graph:
	@python3 scripts/check-imports.py

## ring is the workspace's one rustls crypto provider: nothing may bring aws-lc-rs back.
one-crypto-provider:
	@if $(CARGO) tree --workspace -i aws-lc-rs >/dev/null 2>&1; then \
		echo "aws-lc-rs is compiled in (cargo tree -i aws-lc-rs): keep ring as the one rustls provider"; exit 1; \
	else echo "one rustls crypto provider: ring"; fi

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

buf-lint:
	buf lint

## Benchmarks on both backends: outbox throughput, a drawings backfill end to end, and the
## fan-out goals (table, bench/results/fanout.json and .svg).
bench:
	$(CARGO) bench -p connectability-tests --bench outbox --bench sync --bench fanout

## The fan-out bench at small sizes, unoptimized, so it cannot rot (CI); never fails on speed.
bench-quick:
	$(CARGO) bench --profile dev -p connectability-tests --bench fanout -- --quick

## Regenerate code from proto/ (cargo does it on every build; this just forces it).
proto:
	touch libs/proto/build.rs && $(CARGO) build -p connectability-proto

## Forget the dev data (demo data loads again on the next `make run`).
clean-data:
	rm -rf .data
