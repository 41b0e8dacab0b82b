# okta-resend: every developer and CI entry point.
#   make dev    run the function locally, end to end (see README.md)
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
	@echo "make dev    run okta-resend locally (moto + Okta sandbox + cargo lambda watch);"
	@echo "            OKTA_RESEND_CREDENTIAL=oauth|oauth-dpop for the OAuth service app"
	@echo "make test   formatting, clippy and every test (starts and stops its own services)"
	@echo "make demo   the end-to-end check alone: sample events through cargo lambda watch"
	@echo "make check-deploy   sam build for x86_64 (slow: a release build)"
	@echo "make bench  okta-resend beside a bare lambda_http function (the floor): init, per-request CPU"
	@echo "            and latency, memory, zip size, TLS handshake; ROUNDS, WARM, BENCH_TLS=0;"
	@echo "            table in bench/RESULTS.md"
	@echo "make bench-smoke   the same in seconds on debug builds, no numbers judged (make test runs it)"
	@echo "make profile       perf profile of the warm loop, symbols kept (PROFILE_CONFIG=deployed|"
	@echo "            guard_off|both_off): .dev/profile.txt"
	@echo "make fuzz   the fuzz test's long run: 2,000,000 generated events (FUZZ_CASES, FUZZ_SEED)"
	@echo "make soak   20,000 mixed requests through one warm instance, with the memory check"

tools: $(VENV)/.installed

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## Every test: the template and OpenAPI checks, the DynamoDB front's own check of
## DynamoDB's conflict rules, unit and integration tests (moto started once for the run by
## scripts/moto.py and always stopped: MOTO_ENDPOINT; a moto that serves one request at a
## time, MOTO_SERIAL_ENDPOINT; and one behind the DynamoDB front that answers overlapping
## requests as DynamoDB does, MOTO_FRONT_ENDPOINT, for the concurrency tests), then the
## end-to-end run through the real Lambda runtime with its conformance check against
## openapi.yaml (make demo); before it, the bench's smoke (make bench-smoke), so it cannot rot.
test: tools lint check-template check-openapi
	$(BIN)/python scripts/test_dynamo_front.py
	$(BIN)/python scripts/moto.py run --serial-too --front-too -- cargo nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory bench-smoke
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

.PHONY: bench bench-smoke profile
## okta-resend beside the floor (bench/floor, a bare lambda_http function, same release
## profile), side by side in one run: init wall and CPU, first request, warm latency and
## CPU per request, peak RSS, for the deployed configuration, guard off, guard and factor
## check off, Okta over TLS (BENCH_TLS=0 skips it) and the OAuth service app; moto's own
## answer time; the bootstrap and its zip. The table, with issue 17's targets, goes to
## bench/RESULTS.md (raw figures in .dev/bench.json). ROUNDS (5) rounds of WARM (200) warm
## requests per configuration. Never a pass/fail test on a number.
bench: tools
	$(BIN)/python scripts/bench.py

## The bench in seconds, so it cannot rot (make test runs it): debug builds, one round of 3
## warm requests, TLS and OAuth included; prints the table, writes only under .dev/; fails
## when a request does not answer 200, the table cannot be built or the TLS run was not over
## TLS, never on a number.
bench-smoke: tools
	$(BIN)/python scripts/bench.py --smoke

## perf profile of the warm loop: the release profile with symbols kept (target/profiling),
## PROFILE_CONFIG (deployed, guard_off or both_off) for 400 warm requests, perf record
## attached for the warm loop only; perf report by symbol and by dso in .dev/profile.txt.
PROFILE_CONFIG ?= deployed
profile: tools
	PROFILE_CONFIG=$(PROFILE_CONFIG) $(BIN)/python scripts/bench.py --profile

.PHONY: fuzz
## The long run of tests/fuzz.rs (make test runs it with 100,000 cases): FUZZ_CASES
## generated events from FUZZ_SEED, by default today's date, so each day tries new cases and
## a failure is reproduced with the seed it prints. Built at opt-level 1 in its own target
## directory (about 6x faster than the debug build; its first build takes a few minutes).
FUZZ_CASES ?= 2000000
FUZZ_SEED ?= $(shell date +%Y%m%d)
fuzz:
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$(FUZZ_SEED) CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-target}/fuzz \
		cargo nextest run -p okta-resend --test fuzz --no-capture --config profile.dev.opt-level=1

.PHONY: soak
## 20,000 mixed valid and invalid requests (tests/soak.rs) through one instance of the
## debug binary behind the Runtime API emulation, against moto and the Okta sandbox
## (cooldowns off, shared guard off): no unexpected status, one code sent per 200, and the
## RSS at the end within 10% of its value after the first 1,000 requests. make test runs
## the same test with 2,000 requests and no memory check. SOAK_REQUESTS=N for another count.
SOAK_REQUESTS ?= 20000
soak: tools
	SOAK_REQUESTS=$(SOAK_REQUESTS) SOAK_MEMORY_CHECK=1 $(BIN)/python scripts/moto.py run -- \
		cargo nextest run -p okta-resend --test soak --no-capture
