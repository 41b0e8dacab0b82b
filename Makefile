# okta-resend: every developer and CI entry point.
#   make dev    run the function locally, end to end (see README)
#   make test   formatting, clippy, every test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export SAM_CLI_TELEMETRY := 0
export CARGO_TERM_COLOR ?= never

# Pinned tools (cargo-lambda with its zig, moto) live in a git-ignored venv.
$(VENV)/.installed: tools/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r $<
	touch $@

# Deploy checks and their tool venvs (mk/deploy.mk: check-template, check-openapi,
# check-deploy, build-arm64).
include mk/deploy.mk

.PHONY: help tools test lint
help:
	@echo "make dev    run okta-resend locally (moto + Okta sandbox + cargo lambda watch)"
	@echo "make test   formatting, clippy and every test (starts and stops its own services)"
	@echo "make demo   the end-to-end check alone: sample events through cargo lambda watch"
	@echo "make check-deploy   sam build for x86_64 (slow: a release build)"
	@echo "make bench  cold start, latency, memory and size of the release artifact"

tools: $(VENV)/.installed

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## Every test: the template and OpenAPI checks, unit and integration tests (moto started
## once for the run by scripts/moto.py and always stopped: MOTO_ENDPOINT, plus a moto that
## serves one request at a time, MOTO_SERIAL_ENDPOINT), then the end-to-end run through
## the real Lambda runtime with its conformance check against openapi.yaml (make demo).
test: tools lint check-template check-openapi
	$(BIN)/python scripts/moto.py run --serial-too -- cargo nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory demo


.PHONY: dev demo
## The whole function locally: moto + Okta sandbox + cargo lambda watch, until Ctrl-C.
dev: tools
	$(BIN)/python scripts/stack.py dev

## Brings the stack up, checks every sample event and a few HTTP calls against
## events/manifest.json and every answer (plus generated requests) against openapi.yaml,
## then brings it down.
demo: tools $(LINT_VENV)/.installed
	$(BIN)/python scripts/stack.py demo --conformance

.PHONY: bench
## Cold start, latency, memory and size of the release artifact (never a pass/fail test).
bench: tools
	$(BIN)/python scripts/bench.py
