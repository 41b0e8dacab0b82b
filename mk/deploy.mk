# Deploy checks: template.yaml (cfn-lint, sam validate --lint, policy), openapi.yaml, and
# `sam build`. Included by the root Makefile (which defines PYTHON, BIN and `tools`).
#
#   make check-template   lint template.yaml, open (AllowAnonymous=true), with a JWT and
#                         with the guard off, no warnings; check its Rules (~1 min)
#   make check-openapi    validate openapi.yaml as OpenAPI 3.1 (~5 s)
#   make check-deploy     `sam build` for x86_64, offline (release build: minutes)
#   make build-arm64      `sam build` for arm64 (the default Architecture); needs the
#                         aarch64-unknown-linux-gnu Rust target, says so when it is missing
#
# SAM CLI pins boto3, cfn-lint and Flask, which clash with moto's: it gets its own
# git-ignored venv, as does the OpenAPI validator. cfn-lint is the one SAM CLI pins
# (1.58.0), so `cfn-lint` and `sam validate --lint` run the same linter.

SAM_VENV := .venv-sam
SAM_BIN := $(CURDIR)/$(SAM_VENV)/bin
LINT_VENV := .venv-lint
LINT_BIN := $(CURDIR)/$(LINT_VENV)/bin
SAM := $(SAM_BIN)/sam
# Where the lint copies of the template go (git-ignored, as all of .aws-sam).
LINT_DIR := .aws-sam/lint
# x86_64 build of `make check-deploy`, apart from .aws-sam/build (what `sam deploy` takes),
# so a CI build can never be deployed with the template's default arm64 by mistake.
CHECK_BUILD_DIR := .aws-sam/check-x86_64
# Linting needs a region, not credentials or network.
LINT_REGION := us-east-1

# Parameter sets the template is linted with (values only need to match the patterns).
# Each one must also pass the template's Rules (tools/check-template-policy.py): without
# JwtIssuer and JwtAudience a deployment needs AllowAnonymous=true.
DEPLOY_REQUIRED_PARAMS := OktaOrgUrl=https://example.okta.com \
  OktaSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:okta-resend/api-token-AbC123
# An open route, on purpose.
DEPLOY_OPEN_PARAMS := AllowAnonymous=true
DEPLOY_JWT_PARAMS := JwtIssuer=https://example.okta.com/oauth2/default \
  JwtAudience=api://default,okta-resend-app \
  OktaSecretKmsKeyArn=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \
  AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:okta-resend-alarms \
  JwtAuthorizationScopes=okta.resend AllowedPrefixes=+1,+44 DeniedPrefixes=+1876 \
  ReservedConcurrency=5 Architecture=x86_64 LogLevel=DEBUG \
  GuardTableDeletionProtection=true GuardTablePointInTimeRecovery=true GuardFailOpen=true \
  ResendCooldownSeconds=60 ResendEmailCooldownSeconds=10 ResendCooldownMaxSeconds=3600 \
  ResendUserDailyLimit=20 ResendDestinationHourlyLimit=3 ResendPrefixHourlyLimit=10 \
  ResendHourlyBudget=0 ResendIpHourlyLimit=20 ResendMismatchLimit=1 ActivateAttemptsLimit=3 \
  AllowedTemplateIds=cstk2flOtuCMDJK4b0g3,cstk2flOtuCMDJK4b0g4 \
  SentPerHourAlarmThreshold=100 ActivationFailuresAlarmThreshold=20 Api5xxAlarm=true
# The guard off: no table, no key secret, no DynamoDB permission (behind a JWT: an open
# route without the guard is what docs/security.md advises against).
DEPLOY_GUARD_OFF_PARAMS := Guard=false JwtIssuer=https://example.okta.com/oauth2/default \
  JwtAudience=api://default

$(SAM_VENV)/.installed: tools/requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_BIN)/pip install -q --disable-pip-version-check -r $<
	touch $@

$(LINT_VENV)/.installed: tools/requirements-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_BIN)/pip install -q --disable-pip-version-check -r $<
	touch $@

.PHONY: tools-deploy check-template check-openapi check-deploy build-arm64 freeze-deploy-tools
tools-deploy: $(SAM_VENV)/.installed $(LINT_VENV)/.installed

## The template as written (cfn-lint checks every Fn::If branch), then three copies with
## the parameter defaults of a real deployment: open route (AllowAnonymous=true); JWT + KMS
## key + alarm topic + reserved concurrency + tuned guard limits; and the guard off
## (Guard=false, with a JWT). Any cfn-lint match, warning or not, fails. The policy check
## then asserts the template's Rules (as written, its defaults without a JWT are refused,
## AllowAnonymous=true or a JWT accepted; each copy is accepted), the two routes (resend
## and activate: one integration, one authorizer, the stage's throttling, one invoke
## permission each), the guard's resources and permissions in each state (on for the first
## three, off for the last), the alarms (Errors and Throttles always, guessed codes always,
## the API's 5xx only in the JWT copy, which sets Api5xxAlarm=true and an alarm topic), the
## dashboard, and that every log group outlives the stack. The template as written must be
## the policy check's first argument.
LINT_COPIES := $(LINT_DIR)/open.json $(LINT_DIR)/jwt.json $(LINT_DIR)/guard-off.json
check-template: $(SAM_VENV)/.installed
	@mkdir -p $(LINT_DIR)
	$(SAM_BIN)/python tools/template-with-defaults.py template.yaml $(LINT_DIR)/open.json $(DEPLOY_REQUIRED_PARAMS) $(DEPLOY_OPEN_PARAMS)
	$(SAM_BIN)/python tools/template-with-defaults.py template.yaml $(LINT_DIR)/jwt.json $(DEPLOY_REQUIRED_PARAMS) $(DEPLOY_JWT_PARAMS)
	$(SAM_BIN)/python tools/template-with-defaults.py template.yaml $(LINT_DIR)/guard-off.json $(DEPLOY_REQUIRED_PARAMS) $(DEPLOY_GUARD_OFF_PARAMS)
	$(SAM_BIN)/cfn-lint --non-zero-exit-code informational -- template.yaml $(LINT_COPIES)
	@for t in template.yaml $(LINT_COPIES); do \
	  echo "sam validate --lint -t $$t"; \
	  $(SAM) validate --lint --region $(LINT_REGION) -t $$t || exit 1; \
	done
	$(SAM_BIN)/python tools/check-template-policy.py template.yaml $(LINT_COPIES)

check-openapi: $(LINT_VENV)/.installed
	$(LINT_BIN)/openapi-spec-validator openapi.yaml

## `sam build` as a deploy runs it, for x86_64 (no extra Rust target needed). cargo-lambda
## (with its zig) comes from the main venv, first on PATH. Checks that the artifact is
## one x86-64 `bootstrap` and nothing else (the workspace's sandbox is not shipped).
check-deploy: tools $(SAM_VENV)/.installed
	rm -rf $(CHECK_BUILD_DIR)
	PATH="$(BIN):$$PATH" $(SAM) build --build-in-source --parameter-overrides Architecture=x86_64 --build-dir $(CHECK_BUILD_DIR)
	@./tools/check-artifact.sh $(CHECK_BUILD_DIR)/OktaResendFunction x86_64

## The default Architecture (arm64). Not run in CI: it needs rustup's
## aarch64-unknown-linux-gnu target, which is downloaded, not promised on every machine.
build-arm64: tools $(SAM_VENV)/.installed
	@if ! command -v rustup >/dev/null 2>&1; then \
	  echo "build-arm64: rustup is not installed; an arm64 build needs it to add the aarch64-unknown-linux-gnu target." >&2; \
	  echo "  Or build for x86_64: make check-deploy, and deploy with --parameter-overrides Architecture=x86_64." >&2; \
	  exit 1; \
	fi
	@if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then \
	  echo "build-arm64: the Rust target aarch64-unknown-linux-gnu is not installed (rustup target list --installed)." >&2; \
	  echo "  Install it (downloads the target's standard library): rustup target add aarch64-unknown-linux-gnu" >&2; \
	  echo "  Or build and deploy for x86_64: sam build --parameter-overrides Architecture=x86_64, then" >&2; \
	  echo "  sam deploy --parameter-overrides Architecture=x86_64 ... (see docs/deploy.md)." >&2; \
	  exit 1; \
	fi
	PATH="$(BIN):$$PATH" $(SAM) build --build-in-source --parameter-overrides Architecture=arm64
	@./tools/check-artifact.sh .aws-sam/build/OktaResendFunction arm64

## Re-pin the deploy tools: fresh venvs from the top-level versions, then pip freeze.
SAM_CLI_VERSION := 1.170.0
OPENAPI_SPEC_VALIDATOR_VERSION := 0.9.0
SCHEMATHESIS_VERSION := 4.32.5
freeze-deploy-tools:
	rm -rf .venv-freeze
	$(PYTHON) -m venv .venv-freeze
	.venv-freeze/bin/pip install -q --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION)
	.venv-freeze/bin/pip freeze --exclude-editable > tools/requirements-sam.txt
	rm -rf .venv-freeze
	$(PYTHON) -m venv .venv-freeze
	.venv-freeze/bin/pip install -q --disable-pip-version-check openapi-spec-validator==$(OPENAPI_SPEC_VALIDATOR_VERSION) schemathesis==$(SCHEMATHESIS_VERSION)
	.venv-freeze/bin/pip freeze --exclude-editable > tools/requirements-lint.txt
	rm -rf .venv-freeze
