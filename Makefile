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

.PHONY: help tools test lint unit
help:
	@echo "make dev    run okta-resend locally (moto + Okta sandbox + cargo lambda watch)"
	@echo "make test   formatting, clippy and every test (starts and stops its own services)"

tools: $(VENV)/.installed

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## Every test: unit and integration tests (moto started once for the run and always
## stopped), then the end-to-end run through the real Lambda runtime (make demo).
test: tools lint
	MOTO_SERVER=$(BIN)/moto_server scripts/with-moto.sh cargo nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory demo

-include mk/*.mk

.PHONY: dev demo
## The whole function locally: moto + Okta sandbox + cargo lambda watch, until Ctrl-C.
dev: tools
	$(BIN)/python scripts/stack.py dev

## Brings the stack up, checks every sample event and a few HTTP calls, brings it down.
demo: tools
	$(BIN)/python scripts/stack.py demo
