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

## Every test. moto (Secrets Manager) is started once for the run and always stopped.
test: tools lint
	MOTO_SERVER=$(BIN)/moto_server scripts/with-moto.sh cargo nextest run --workspace --no-fail-fast

-include mk/*.mk
