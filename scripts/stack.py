#!/usr/bin/env python3
"""The local stack: moto (Secrets Manager, and DynamoDB for the guard), the Okta sandbox
and okta-resend under `cargo lambda watch`, all on 127.0.0.1.

    stack.py dev    bring the stack up, print how to call it, run until Ctrl-C
    stack.py demo   bring it up, send every sample event, a few HTTP calls and the whole
                    verification screen (resend, a wrong code, the right code read from the
                    sandbox, resend again; all listed in events/manifest.json), print a table,
                    bring it down; exit 1 when any answer differs from the manifest

Everything started here is stopped on exit, on Ctrl-C and on failure half-way. Logs and
state go under .dev/ in the repository.

OKTA_RESEND_CREDENTIAL picks the Okta credential the function is given: `token` (the
default), the sandbox's API token; `oauth`, an OAuth 2.0 service app (a fresh EC P-256 key
pair per run under .dev/oauth/, the sandbox told the app and its public key, the secret
holding the app: Bearer tokens); `oauth-dpop`, the same with a sandbox that requires DPoP
(and `"dpop": true` in the secret). docs/deploy.md, "An OAuth 2.0 service app".

OKTA_RESEND_DYNAMO_FRONT=1 puts the DynamoDB front (scripts/dynamo_front.py) before moto:
every AWS call of the stack goes through it, and overlapping DynamoDB requests are answered
by DynamoDB's conflict rules, which moto alone never applies.
"""

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import moto as moto_launcher  # noqa: E402  scripts/moto.py (the one moto launcher), not the moto package
import guard_table  # noqa: E402  scripts/guard_table.py: the guard's table, as template.yaml declares it

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DEV = ROOT / ".dev"
FUNCTION = "okta-resend"
SECRET_ID = "okta-resend/local"
REGION = "us-east-1"
OKTA_TIMEOUT_MS = 3000

# The shared guard (README.md, Abuse protection), against moto: its table (created from
# template.yaml's key schema by scripts/guard_table.py), its HMAC key secret (64 random hex
# characters per run) and the EMF namespace.
GUARD_TABLE = "okta-resend-guard-local"
GUARD_KEY_SECRET_ID = "okta-resend/guard-key-local"
METRICS_NAMESPACE = "okta-resend/local"
# The guard's caps, raised for the local stack: every request of make demo
# (events/manifest.json) and of make bench is for the same user and the same number
# (+1 555 415 1337), from a handful of source addresses (the sample events' and curl's
# 127.0.0.1), so the defaults (10 resends a day per user, 5 an hour per number, 30 an hour
# per number prefix, 100 an hour per address) would refuse them half-way. The cooldowns,
# the mismatch limit and the hourly budget keep their defaults (30 s for sms and call, 5 s
# for email, growing; 3 mismatches an hour; 1000 an hour): the manifest's second sms
# expects 429 resend_too_soon from the cooldown. A manifest config's own variables win over
# these (its tight-guard config sets the mismatch limit and the address cap to 1).
# `make dev` with OKTA_RESEND_REAL_LIMITS=1 leaves every limit at its default.
GENEROUS_LIMITS = {
    "RESEND_USER_DAILY_LIMIT": "1000",
    "RESEND_DESTINATION_HOURLY_LIMIT": "1000",
    "RESEND_PREFIX_HOURLY_LIMIT": "1000",
    "RESEND_IP_HOURLY_LIMIT": "1000",
}


def guard_env(real_limits: bool = False) -> dict:
    """The function's guard variables against the stack's moto: on, with the generous caps
    above unless `real_limits`."""
    env = {
        "RESEND_GUARD_TABLE": GUARD_TABLE,
        "RESEND_GUARD_KEY_SECRET_ID": GUARD_KEY_SECRET_ID,
        "METRICS_NAMESPACE": METRICS_NAMESPACE,
    }
    return env if real_limits else {**env, **GENEROUS_LIMITS}


class StackError(Exception):
    pass


# The Okta credential of the stack's secret (OKTA_RESEND_CREDENTIAL): the sandbox's API
# token, or a service app whose tokens the sandbox's token endpoint issues, as Bearer or,
# with a sandbox that requires it, DPoP-bound.
CREDENTIALS = ("token", "oauth", "oauth-dpop")
SERVICE_APP_CLIENT_ID = "0oalocalserviceapp"
SERVICE_APP_SCOPES = "okta.users.manage"
SERVICE_APP_DIR = DEV / "oauth"


class ServiceApp:
    """The local OAuth 2.0 service app: a new EC P-256 key pair for every run, made with the
    openssl CLI as docs/deploy.md tells an operator to. The private key goes to
    .dev/oauth/service-app-key.pem (mode 0600, never printed) and into the secret; the
    sandbox is given the public key (.dev/oauth/service-app-key.pub.pem) and its key id."""

    def __init__(self):
        SERVICE_APP_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.client_id = SERVICE_APP_CLIENT_ID
        self.key_id = "local-" + secrets.token_hex(4)
        self.private_key_file = SERVICE_APP_DIR / "service-app-key.pem"
        self.public_key_file = SERVICE_APP_DIR / "service-app-key.pub.pem"
        try:
            # On stdout, captured: the key is never shown, nor written anywhere but below.
            self.private_key = subprocess.run(
                ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                capture_output=True, text=True, check=True).stdout
            public_key = subprocess.run(["openssl", "pkey", "-pubout"], input=self.private_key,
                                        capture_output=True, text=True, check=True).stdout
        except FileNotFoundError as err:
            raise StackError("the OAuth credential needs the openssl CLI, which is not on PATH") from err
        except subprocess.CalledProcessError as err:
            raise StackError(f"openssl could not make the service app's key pair: {err.stderr.strip()[:300]}") from None
        if not self.private_key.startswith("-----BEGIN PRIVATE KEY-----"):
            raise StackError("openssl did not write a PEM PKCS#8 private key")
        self.private_key_file.unlink(missing_ok=True)
        with os.fdopen(os.open(self.private_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(self.private_key)
        self.public_key_file.write_text(public_key)

    def secret(self, dpop: bool) -> str:
        """The secret's value for this app (docs/deploy.md's format)."""
        return json.dumps({"clientId": self.client_id, "privateKey": self.private_key, "keyId": self.key_id,
                           "scopes": SERVICE_APP_SCOPES, "dpop": dpop})

    def sandbox_flags(self, require_dpop: bool) -> list:
        return (["--oauth-client-id", self.client_id, "--oauth-public-key-file", self.public_key_file,
                 "--oauth-key-id", self.key_id] + (["--require-dpop"] if require_dpop else []))

    def __repr__(self) -> str:
        return f"ServiceApp({self.client_id}, kid {self.key_id})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def preferred_port(port: int) -> int:
    """`port` when it is free (so the printed URLs stay the same from run to run), else any."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def without_max_concurrency(env: dict) -> dict:
    """`env` for `cargo lambda watch`, plus a cargo runner that starts the function without
    AWS_LAMBDA_MAX_CONCURRENCY. cargo lambda watch (1.9) sets that variable for the function
    (its --concurrency, default 1), and lambda_runtime prints a WARN at every start whenever it
    is set (to any value) without its concurrency-tokio feature. Lambda as deployed does not
    set it (only Lambda Managed Instances do): without it the local function starts in the
    deployed environment, with no warning. cargo lambda's --env-var cannot unset a variable,
    but it starts the function with `cargo run`, which goes through the runner (`env -u`).
    A CARGO_TARGET_<host>_RUNNER already in the environment is kept."""
    rustc = subprocess.run(["rustc", "-vV"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    host = next(line.split(":", 1)[1].strip() for line in rustc.splitlines() if line.startswith("host:"))
    runner = "CARGO_TARGET_" + host.upper().replace("-", "_").replace(".", "_") + "_RUNNER"
    return {runner: "env -u AWS_LAMBDA_MAX_CONCURRENCY", **env}


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    """(status, body bytes); any HTTP status is an answer, no exception."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


class Stack:
    def __init__(self, *, quiet_function: bool, sms_cooldown_ms: int, email_cooldown_ms: int, port: int | None,
                 real_limits: bool = False, okta_rate_limit: int = 600, dynamo_front: bool = False,
                 credential: str = "token", service_app: bool = False):
        """`credential`: what the secret SECRET_ID holds (CREDENTIALS). `service_app`: give
        the sandbox a service app (self.app) even when the secret holds the API token (the
        bench, which runs both); `oauth` and `oauth-dpop` always do."""
        if credential not in CREDENTIALS:
            raise StackError(f"unknown credential {credential!r}: one of {', '.join(CREDENTIALS)}")
        self.credential = credential
        self.with_service_app = service_app or credential != "token"
        self.app: ServiceApp | None = None
        self.wanted_port = port
        self.dynamo_front = dynamo_front
        self.okta_rate_limit = okta_rate_limit
        self.real_limits = real_limits
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.quiet_function = quiet_function
        self.sms_cooldown_ms = sms_cooldown_ms
        self.email_cooldown_ms = email_cooldown_ms
        self.token = "sandbox-" + secrets.token_hex(16)
        DEV.mkdir(exist_ok=True)
        self.logs = DEV / "logs"
        self.logs.mkdir(exist_ok=True)

    # -- processes ---------------------------------------------------------------------
    def spawn(self, name: str, argv: list, **kwargs) -> subprocess.Popen:
        if "stdout" not in kwargs:
            kwargs["stdout"] = open(self.logs / f"{name}.log", "wb")
        kwargs.setdefault("stderr", subprocess.STDOUT)
        # Own process group, so stopping it also stops its children (cargo lambda -> function).
        proc = subprocess.Popen([str(a) for a in argv], start_new_session=True, stdin=subprocess.DEVNULL, **kwargs)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        # A second Ctrl-C (or SIGTERM) must not cut the clean-up short and leave
        # services running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 10
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def wait_until(self, what: str, check, deadline_s: float, proc: subprocess.Popen | None = None, log: str | None = None):
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{what} exited with {proc.returncode}; see {log or 'its log'}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise StackError(f"{what} did not answer within {deadline_s:.0f} s; see {log or 'its log'}")

    # -- pieces ------------------------------------------------------------------------
    def build(self) -> None:
        say("building okta-resend and the Okta sandbox (the first build takes a few minutes)")
        # Built one package at a time, as `cargo lambda watch` builds the function, so its
        # first request finds the binary up to date instead of compiling for minutes.
        subprocess.run(["cargo", "build", "--quiet", "-p", FUNCTION, "--bin", FUNCTION], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--quiet", "-p", "okta-sandbox"], cwd=ROOT, check=True)

    def describe_credential(self) -> str:
        if self.credential == "token":
            return "the sandbox's API token (random per run)"
        tokens = "DPoP-bound tokens, the sandbox requires DPoP" if self.credential == "oauth-dpop" else "Bearer tokens"
        return (f"OAuth 2.0 service app {SERVICE_APP_CLIENT_ID} ({SERVICE_APP_SCOPES}; "
                f"ES256 key made for this run, kid {self.app.key_id}; {tokens})")

    def secret_value(self) -> str:
        """What the secret SECRET_ID holds for the stack's credential."""
        if self.credential == "token":
            return json.dumps({"apiToken": self.token})
        return self.app.secret(dpop=self.credential == "oauth-dpop")

    def put_secret(self, name: str, value: str) -> None:
        self.secrets_client.create_secret(Name=name, SecretString=value)

    def start_moto(self) -> None:
        if self.with_service_app and self.app is None:
            self.app = ServiceApp()
        try:
            moto = moto_launcher.start(log=self.logs / "moto.log", front=self.dynamo_front)
        except moto_launcher.MotoError as err:
            raise StackError(str(err)) from err
        # Its own process group, like everything spawned here: stop() ends it with the rest.
        # The front, when there is one, heads a second group: listed after moto, so stop()
        # (which goes backwards) ends it first, and dev() notices if it exits.
        self.procs.append(("moto", moto.proc))
        if moto.front is not None:
            self.procs.append(("dynamo-front", moto.front.proc))
        # With the front, its endpoint: every AWS call of the stack goes through it.
        self.moto_url = moto.endpoint
        import boto3  # from the venv this script runs in

        client = self.secrets_client = boto3.client(
            "secretsmanager",
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_secret(Name=SECRET_ID, SecretString=self.secret_value())
        # The guard's HMAC key, as the stack's generated secret: new every run.
        client.create_secret(Name=GUARD_KEY_SECRET_ID, SecretString=secrets.token_hex(32))
        try:
            guard_table.create_table(self.moto_url, GUARD_TABLE)
        except guard_table.GuardTableError as err:
            raise StackError(str(err)) from err
        behind = f" (the DynamoDB front, moto on {moto.moto_endpoint})" if moto.front is not None else ""
        say(f"moto (Secrets Manager, DynamoDB) on {self.moto_url}{behind}: secrets {SECRET_ID} and "
            f"{GUARD_KEY_SECRET_ID}, guard table {GUARD_TABLE} created")
        say(f"Okta credential (OKTA_RESEND_CREDENTIAL={self.credential}): {self.describe_credential()}")

    def start_sandbox(self) -> None:
        proc = self.spawn(
            "okta-sandbox",
            [
                TARGET / "debug" / "okta-sandbox",
                "--listen", "127.0.0.1:0",
                "--token", self.token,
                "--sms-cooldown-ms", self.sms_cooldown_ms,
                "--call-cooldown-ms", self.sms_cooldown_ms,
                "--email-cooldown-ms", self.email_cooldown_ms,
                "--slow-ms", OKTA_TIMEOUT_MS * 3,
                "--rate-limit", self.okta_rate_limit,
                *(self.app.sandbox_flags(require_dpop=self.credential == "oauth-dpop") if self.app else []),
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.logs / "okta-sandbox.log", "wb"),
        )
        first = {}

        def read_startup():
            line = proc.stdout.readline()
            if line:
                first.update(json.loads(line))
            proc.stdout.read()  # keep draining so the sandbox never blocks on stdout

        threading.Thread(target=read_startup, daemon=True).start()
        self.wait_until("okta-sandbox", lambda: "url" in first, 20, proc, ".dev/logs/okta-sandbox.log")
        self.sandbox = first
        self.okta_url = first["url"]
        self.wait_until("okta-sandbox", lambda: http("GET", f"{self.okta_url}/sandbox/health")[0] == 200, 10, proc)
        say(f"Okta sandbox on {self.okta_url}" + (f", with the service app {self.app.client_id}" if self.app else ""))

    def start_function(self, extra_env: dict | None = None, name: str = "function") -> int:
        """Starts okta-resend under `cargo lambda watch` with the stack's variables plus
        `extra_env`; returns its port. The first one started is the stack's function."""
        port = preferred_port(self.wanted_port) if self.wanted_port and name == "function" else free_port()
        function_url = f"http://127.0.0.1:{port}/lambda-url/{FUNCTION}"
        env_vars = {
            "OKTA_ORG_URL": self.okta_url,
            "OKTA_SECRET_ID": SECRET_ID,
            "OKTA_TIMEOUT_MS": str(OKTA_TIMEOUT_MS),
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
            **guard_env(self.real_limits),
            **(extra_env or {}),
        }
        argv = [VENV_BIN / "cargo-lambda", "lambda", "watch", "-A", "127.0.0.1", "-P", port,
                "--bin", FUNCTION, "--quiet"]
        if self.quiet_function:
            # demo: one fixed build; dev keeps cargo lambda watch's own reloading.
            argv.append("--ignore-changes")
        # In a file, one KEY=VALUE a line: --env-var would split a value at its commas
        # (RESEND_ALLOWED_TEMPLATE_IDS is a comma-separated list).
        env_file = DEV / f"env-{name}"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env_vars.items()))
        argv += ["--env-file", env_file]
        env = without_max_concurrency(dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"))
        log = f".dev/logs/{name}.log"
        proc = self.spawn(name, argv, env=env, cwd=ROOT, **({} if self.quiet_function else {"stdout": None, "stderr": None}))
        # Ready when cargo lambda watch answers on its port. It starts the function on the
        # first invocation (a cold start, as on Lambda), so the probe must not be one: a CORS
        # preflight is answered by cargo lambda itself and never reaches the function, which
        # therefore logs only the requests the user (or the demo) sends. The build above
        # leaves `cargo run` nothing to compile, so that first request starts at once.
        self.wait_until(
            "cargo lambda watch",
            lambda: http("OPTIONS", f"{function_url}/factors/resend", headers={
                "Origin": "http://127.0.0.1", "Access-Control-Request-Method": "POST"})[0] == 200,
            60,
            proc,
            log,
        )
        if name == "function":
            self.port, self.function_url = port, function_url
        say(f"okta-resend ({name}) on {function_url} (cargo lambda watch, Runtime API on port {port}; "
            "the function starts on the first request)")
        return port

    def up(self) -> None:
        self.build()
        self.start_moto()
        self.start_sandbox()
        self.start_function()

    # -- calls -------------------------------------------------------------------------
    def invoke(self, event_file: str, port: int | None = None):
        """Sends a sample event through the Runtime API with `cargo lambda invoke`, to the
        stack's function or the one on `port`."""
        out = subprocess.run(
            [VENV_BIN / "cargo-lambda", "lambda", "invoke", FUNCTION, "--data-file", ROOT / "events" / event_file,
             "-A", "127.0.0.1", "-P", str(port or self.port), "-o", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            return None, f"invoke failed: {out.stderr.strip()[:200]}"
        reply = json.loads(out.stdout)
        status, body = reply.get("statusCode"), reply.get("body") or ""
        # REST v1 answers carry their headers in multiValueHeaders.
        headers = {k: v[0] for k, v in (reply.get("multiValueHeaders") or {}).items() if v}
        headers.update(reply.get("headers") or {})
        event = json.loads((ROOT / "events" / event_file).read_text())
        self.record(f"invoke {event_file}", route_of(event.get("rawPath") or event.get("path") or ""),
                    status, headers, body)
        return status, answer_code(status, body)

    def curl(self, method: str, path: str, body: dict | str | None, content_type: str = "application/json",
             base_url: str | None = None):
        """Sends a real HTTP request with curl to the function URL (the stack's function, or
        the one at `base_url`)."""
        header_file = DEV / "curl-headers.txt"
        argv = ["curl", "-s", "-D", header_file, "-o", "-", "-w", "\n%{http_code}", "-X", method,
                f"{base_url or self.function_url}{path}"]
        if body is not None:
            argv += ["-H", f"Content-Type: {content_type}", "--data-binary",
                     body if isinstance(body, str) else json.dumps(body)]
        out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
        text, _, status = out.stdout.rpartition("\n")
        status = int(status) if status.isdigit() else None
        headers = {}
        if header_file.exists():
            for line in header_file.read_text().splitlines()[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
        self.record(f"curl {method} {path}", route_of(path), status, headers, text)
        return status, answer_code(status, text)

    def record(self, name: str, route: str, status, headers: dict, body: str) -> None:
        """Keeps every answer, with the route it was for, for the conformance check against
        openapi.yaml."""
        with open(DEV / "answers.jsonl", "a") as f:
            f.write(json.dumps({"name": name, "route": route, "status": status, "headers": headers,
                                "body": body}) + "\n")

    def sandbox_factor(self, user_id: str, factor_id: str) -> dict:
        """The sandbox's control view of a factor (sandbox/README.md): its status and the
        code it would accept now."""
        status, body = http("GET", f"{self.okta_url}/sandbox/factors/{factor_id}?userId={user_id}")
        if status != 200:
            raise StackError(f"the sandbox does not show factor {factor_id} of {user_id}: {status} {body[:200]!r}")
        return json.loads(body)

    def sandbox_oauth(self) -> dict:
        """The sandbox's OAuth view (sandbox/README.md, GET /sandbox/oauth)."""
        status, body = http("GET", f"{self.okta_url}/sandbox/oauth")
        if status != 200:
            raise StackError(f"the sandbox's /sandbox/oauth answered {status} {body[:200]!r}")
        return json.loads(body)

    def check_credential(self, functions: int) -> bool:
        """Whether the sandbox saw the credential the stack gave `functions` function
        instances: no token call at all with the API token; with a service app, at least
        one token issued per instance (each fetches its first at cold start; a 401 from a
        fault switch may make one fetch another)."""
        view = self.sandbox_oauth()
        if self.credential == "token":
            ok = view["tokenRequests"] == 0
            print(f"credential: API token, {view['tokenRequests']} token requests (expected 0)  "
                  f"{'ok' if ok else 'MISMATCH'}")
            return ok
        dpop = self.credential == "oauth-dpop"
        ok = view["configured"] and view["requireDpop"] == dpop and view["tokensIssued"] >= functions
        last = (view.get("lastError") or {}).get("error") or "none"
        if last == "use_dpop_nonce":
            last += " (the DPoP nonce challenge, which the function answers)"
        print(f"credential: service app {view['clientId']} ({'DPoP required' if dpop else 'Bearer'}), "
              f"{view['tokensIssued']} tokens issued to {functions} function instances (expected at least one "
              f"each), {view['tokenRequests']} token requests; last refused OAuth step: {last}  "
              f"{'ok' if ok else 'MISMATCH'}")
        return ok


def route_of(path: str) -> str:
    """The route an answer is documented on in openapi.yaml: the activate route's, or the
    resend route's (also for any other path, whose 404 both document)."""
    return "/factors/activate" if path.rstrip("/").endswith("/factors/activate") else "/factors/resend"


def answer_code(status, body: str) -> str:
    try:
        parsed = json.loads(body)
    except (ValueError, TypeError):
        return "(not JSON)"
    if status == 200:
        return parsed.get("status", "?")
    return parsed.get("code", "?")


USER = "00ub0oNGTSWTBKOLGLNR"
# The guard's clock-hour counters start again at every whole hour: the manifest's cases that
# rely on one (tight-guard's address cap: a first resend, then a refusal) must not straddle
# it. The cases take well under this; closer to the hour, the demo waits for it to pass.
HOUR_MARGIN_S = 120


def screen_body(stack: Stack, body: dict) -> dict:
    """A screen step's body with `{code}` (the code the sandbox's factor accepts now) and
    `{wrongCode}` (that code with every digit changed, so never the right one) filled in;
    the factor is the one the body names."""
    if not any(v in ("{code}", "{wrongCode}") for v in body.values()):
        return body
    code = stack.sandbox_factor(body["userId"], body["factorId"])["code"]
    wrong = "".join(str((int(d) + 5) % 10) for d in code)
    return {k: code if v == "{code}" else wrong if v == "{wrongCode}" else v for k, v in body.items()}


def demo(stack: Stack, conformance: bool) -> int:
    (DEV / "answers.jsonl").unlink(missing_ok=True)
    manifest = json.loads((ROOT / "events" / "manifest.json").read_text())
    screen = manifest.get("screen", {"steps": []})
    rows = []
    # One function per configuration the manifest names (the default one is the stack's).
    ports = {"default": stack.port}
    named = {case.get("config", "default") for case in manifest["cases"]} | {screen.get("config", "default")}
    for config in sorted(named - {"default"}):
        ports[config] = stack.start_function(manifest["configs"][config]["env"], name=f"function-{config}")
    left = 3600 - time.time() % 3600
    if left < HOUR_MARGIN_S:
        say(f"waiting {left:.0f} s for the clock hour to end, so that no hourly counter starts again "
            "between two cases")
        time.sleep(left + 1)
    for case in manifest["cases"]:
        config = case.get("config", "default")
        status, code = stack.invoke(case["event"], ports[config])
        label = f"invoke {case['event']}" + ("" if config == "default" else f" ({config})")
        rows.append((label, case["status"], case["code"], status, code))
    for case in manifest["http"]:
        status, code = stack.curl(case["method"], case["path"], case.get("body"),
                                  case.get("contentType", "application/json"))
        rows.append((case["name"], case["status"], case["code"], status, code))
    # The verification screen, step by step with curl, on its configuration's function.
    screen_url = f"http://127.0.0.1:{ports[screen.get('config', 'default')]}/lambda-url/{FUNCTION}"
    for step in screen["steps"]:
        time.sleep(step.get("waitSeconds", 0))
        status, code = stack.curl(step.get("method", "POST"), step["path"], screen_body(stack, step["body"]),
                                  base_url=screen_url)
        rows.append((f"screen: {step['name']}", step["status"], step["code"], status, code))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'request':<{width}}  expected                      got")
    failures = 0
    for name, want_status, want_code, status, code in rows:
        ok = (status, code) == (want_status, want_code)
        failures += not ok
        print(f"{name:<{width}}  {want_status} {want_code:<25} {status} {code}  {'ok' if ok else 'MISMATCH'}")
    print(f"\n{len(rows) - failures}/{len(rows)} answers as expected")
    failures += not stack.check_credential(len(ports))
    if not conformance:
        return 1 if failures else 0

    checker = [ROOT / ".venv-lint" / "bin" / "python", ROOT / "tools" / "conformance.py"]
    print("\nEvery answer above against openapi.yaml:", flush=True)
    recorded = subprocess.run([*checker, "answers", DEV / "answers.jsonl"], cwd=ROOT).returncode
    print("\nGenerated requests (schemathesis) against the running function:", flush=True)
    fuzzed = subprocess.run([*checker, "fuzz", stack.function_url], cwd=ROOT).returncode
    return 1 if failures or recorded or fuzzed else 0


def dev(stack: Stack) -> int:
    user = stack.sandbox.get("user", USER)
    factors = stack.sandbox.get("factors", {})
    sms = factors.get("sms", "sms2gt8gzgEBPUWBIFHN")
    body = json.dumps({"userId": user, "factorId": sms, "factorType": "sms", "phoneNumber": "+1 555 415 1337"})
    # The activation's body, with the code the sandbox would accept now spliced in by the shell.
    activate = json.dumps({"userId": user, "factorId": sms, "passCode": "CODE"}).replace("CODE", "'\"$CODE\"'")
    code_of = (f"curl -s '{stack.okta_url}/sandbox/factors/{sms}?userId={user}' | "
               "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"code\"])'")
    front = ("\n                 through the DynamoDB front (OKTA_RESEND_DYNAMO_FRONT=1): overlapping requests "
             "meet DynamoDB's conflict rules" if stack.dynamo_front else "")
    if stack.app is None:
        credential = ("API token, random per run (OKTA_RESEND_CREDENTIAL=oauth or oauth-dpop: an OAuth 2.0 "
                      "service app)")
    else:
        credential = (f"{stack.describe_credential()}\n                 OKTA_RESEND_CREDENTIAL={stack.credential}; "
                      f"public key {stack.app.public_key_file.relative_to(ROOT)}; the token calls: "
                      f"curl {stack.okta_url}/sandbox/oauth")
    limits = ("the defaults (OKTA_RESEND_REAL_LIMITS=1)" if stack.real_limits else
              ", ".join(f"{k}={v}" for k, v in GENEROUS_LIMITS.items())
              + " (OKTA_RESEND_REAL_LIMITS=1 for the defaults)")
    print(f"""
okta-resend is running locally.

  Okta sandbox   {stack.okta_url}   user {user}, factors {json.dumps(factors)}
  moto           {stack.moto_url}   secrets {SECRET_ID}, {GUARD_KEY_SECRET_ID}; guard table {GUARD_TABLE}{front}
  function       {stack.function_url}   logs below; saving a file under src/ rebuilds and restarts it
  credential     {credential}
  guard limits   cooldowns as deployed (30 s sms/call, 5 s email, growing); {limits}

Try it (paste into another terminal):

  curl -i -X POST {stack.function_url}/factors/resend -H 'Content-Type: application/json' -d {shlex.quote(body)}

Then type the code "sent" (the sandbox shows it) to activate the factor: the screen is done, and
a resend, once its cooldown has passed, answers 409 factor_not_pending:

  CODE=$({code_of})
  curl -i -X POST {stack.function_url}/factors/activate -H 'Content-Type: application/json' -d '{activate}'

  PATH="$PWD/.venv/bin:$PATH" cargo lambda invoke {FUNCTION} -A 127.0.0.1 -P {stack.port} --data-file events/apigw-v2-email.json

Codes the sandbox "sent": curl {stack.okta_url}/sandbox/factors/{sms}?userId={user}
Ctrl-C stops everything.
""", flush=True)
    while True:
        for name, proc in stack.procs:
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}; see .dev/logs/{name}.log")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["dev", "demo"])
    parser.add_argument("--conformance", action="store_true",
                        help="demo: also check every answer, and generated requests, against openapi.yaml")
    args = parser.parse_args()

    # dev prefers port 9000 (cargo lambda's default), so the URL is the same every time;
    # demo takes any free port, so it can run beside a dev stack.
    port = int(os.environ.get("OKTA_RESEND_PORT", "9000")) if args.mode == "dev" else None
    # dev only: the demo's manifest needs the generous caps (see GENEROUS_LIMITS).
    real_limits = args.mode == "dev" and os.environ.get("OKTA_RESEND_REAL_LIMITS") == "1"
    # dev and demo: moto behind the DynamoDB front (scripts/dynamo_front.py).
    dynamo_front = os.environ.get("OKTA_RESEND_DYNAMO_FRONT") == "1"
    # dev and demo: the Okta credential in the secret (CREDENTIALS).
    credential = os.environ.get("OKTA_RESEND_CREDENTIAL") or "token"
    if credential not in CREDENTIALS:
        say(f"OKTA_RESEND_CREDENTIAL={credential}: one of {', '.join(CREDENTIALS)}")
        return 2
    stack = Stack(quiet_function=args.mode == "demo", sms_cooldown_ms=30_000, email_cooldown_ms=5_000, port=port,
                  real_limits=real_limits, dynamo_front=dynamo_front, credential=credential)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    # Also SIGINT: a shell that starts us in the background hands it down ignored; and
    # SIGHUP, for a closed terminal.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        stack.up()
        return demo(stack, args.conformance) if args.mode == "demo" else dev(stack)
    except KeyboardInterrupt:
        print()
        say("interrupted")
        return 130
    except (StackError, subprocess.CalledProcessError) as err:
        say(f"failed: {err}")
        return 1
    finally:
        say("stopping everything this run started")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
