#!/usr/bin/env python3
"""make bench: what okta-resend costs at cold start and per request, beside the floor (a
bare lambda_http function), every figure measured side by side in one run.

    bench.py            make bench: release bootstraps, ROUNDS rounds; the table goes to
                        bench/RESULTS.md, every raw figure to .dev/bench.json
    bench.py --smoke    make bench-smoke (also BENCH_SMOKE=1; make test runs it): debug
                        builds, one round of 3 warm requests, one cold start of each
                        credential; prints the table, writes only .dev/bench-smoke.*
    bench.py --profile  make profile: perf record of the warm loop (below)

Both bootstraps are built as `sam build` builds the function (cargo lambda build --release;
the floor, bench/floor, with the workspace's same release profile) and run as Lambda runs
them: against a Runtime API emulation on 127.0.0.1 that speaks HTTP/1.1 with keep-alive,
as Lambda's does (BENCH_RUNTIME_HTTP=1.0 for the old HTTP/1.0 one, which makes the runtime
client reconnect for every /next and /response), reading their secrets from moto and
calling the local Okta sandbox. The configurations:

  floor      the floor: answers 200 at once, no I/O
  deployed   okta-resend as deployed: the shared guard on (against moto's DynamoDB) and the
             factor check on, API-token credential
  guard_off  without RESEND_GUARD_TABLE: no DynamoDB call, no guard key read
  both_off   guard off and VERIFY_FACTOR=false: one Okta call per request
  tls        deployed, with Okta reached over TLS: a TLS-terminating proxy here (Python
             ssl, a throwaway CA and a leaf for 127.0.0.1 made for the run under
             .dev/bench-tls/) in front of the sandbox, its CA trusted through
             OKTA_RESEND_BENCH_ROOT_CA, a variable only the bench sets. BENCH_TLS=0 skips it
  oauth      deployed, with an OAuth 2.0 service app instead of the API token (secret
             okta-resend/local-oauth, a key pair made for the run, Bearer tokens from the
             sandbox): exactly one token call per cold start, made at init and then kept

Each of ROUNDS (5) rounds gives every configuration one cold start, its first request and
WARM (200) warm requests, in the order of the list above, reversed every other round. Per
configuration, the median over rounds of:

  init wall       process start -> its first /next (config, SDK set-up, secrets read)
  init CPU        the process's CPU time at that first /next
  first request   wall time of the first request and the CPU time it took
  warm            median and p99 wall time of the warm requests, and CPU per warm request
  peak RSS        VmHWM after the warm requests

CPU is the sum over the process's threads of /proc/PID/task/*/schedstat (ns; utime and
stime in /proc/PID/stat count 10 ms ticks), what Lambda bills at 128 MB, where 1 ms of CPU
is about 14 ms of wall time; a thread that ends between two readings loses what it ran in
between. Beside them: moto's own answer time (the median of 20 raw GetSecretValue and 20
DynamoDB GetItem calls from here, each round), the TLS handshake (the tls configuration's
init and first request minus the deployed one's), the service app's extra cold start (the
median of COLD_STARTS (7) more init-only cold starts of each credential, alternated, since
one cold start against another is noise), and the artifact: the bootstrap and the zip
Lambda would get (the bootstrap alone, deflated), for okta-resend and the floor. The table
sets each figure beside the floor's and issue 17's target, met or not.

The function reaches moto through a keep-alive relay (scripts/keepalive_relay.py): moto
answers every request with `Connection: close`, so without it every DynamoDB and Secrets
Manager call would open a new connection, which Lambda never pays (DynamoDB keeps them
alive); the floor has no such call. Every request is for a new user and a new factor (a
real user's timeline holds a few sends; one user for every request would grow its item to
hundreds, and the guard's JSON with it), with 20-character ids, so no cooldown applies,
and every guarded instance gets a new, empty guard table (moto's TransactWriteItems
deep-copies the whole table for each item it writes, so its answer time grows with the
table); the guard's per-user, per-number, per-prefix and per-address caps (scripts/stack.py,
GENEROUS_LIMITS) and the hourly budget (BENCH_BUDGET) are raised to at least the requests one
table sees, so none refuses while every one is still checked and counted. moto can answer
after the guard's 1 s call timeout on a loaded machine: make bench then runs that instance
again, once, and says so (the smoke never does).

make profile builds the release profile with symbols kept (line tables, not stripped) in
target/profiling, runs PROFILE_CONFIG (deployed, guard_off or both_off) for 400 warm requests
with `perf record -e cpu-clock -F 4999 -g` attached for the warm loop only, and writes
`perf report --no-children` by dso and symbol (top 60) and by dso to .dev/profile.txt.

Numbers are wall-clock and CPU time on this machine against loopback services: read the
differences and ratios, not the absolutes. Nothing fails on a number; a run fails when a
request answers anything but 200, a process cannot start, or the tls run was not over TLS.
Everything the bench starts (moto, the sandbox, each bootstrap, the TLS proxy, perf) is
stopped on exit, on failure and on Ctrl-C.
"""

import argparse
import contextlib
import datetime
import io
import ipaddress
import json
import math
import os
import platform
import queue
import re
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import (DEV, GENEROUS_LIMITS, GUARD_TABLE, REGION, ROOT, SECRET_ID, TARGET, VENV_BIN, Stack,  # noqa: E402
                   StackError, guard_env, say)
import guard_table  # noqa: E402
from keepalive_relay import KeepAliveRelay, Server  # noqa: E402

SMOKE = {"ROUNDS": 1, "WARM": 3, "COLD_STARTS": 1}
DEFAULTS = {"ROUNDS": 5, "WARM": 200, "COLD_STARTS": 7}
PROFILE_WARM = 400
PROFILE_CONFIGS = ("deployed", "guard_off", "both_off")
# Non-zero, so the budget item is still in every commit (0 would leave it out and flatter
# the guard's cost); raised further when a table sees more requests in a run.
BENCH_BUDGET = 1_000_000
# The OAuth configuration's secret (the service app, Bearer), beside the stack's.
OAUTH_SECRET_ID = SECRET_ID + "-oauth"
TLS_DIR = DEV / "bench-tls"
RESULTS = ROOT / "bench" / "RESULTS.md"
MOTO_CALLS = 20
# The targets (issue 17), in the units of the figures below.
TARGET_INIT_WALL_MS = 5
TARGET_INIT_CPU_MS = 3
TARGET_FIRST_RATIO = 1.5
TARGET_WARM_CPU_US = 600
TARGET_BOTH_OFF_WARM_CPU_US = 100
TARGET_RSS_MB = 12
TARGET_ZIP_MB = 3.5

# Each figure of one cold start and its requests: its label, unit and decimals.
FIGURES = {
    "init_wall_ms": ("init wall (start -> first /next)", "ms", 1),
    "init_cpu_ms": ("init CPU", "ms", 2),
    "first_wall_ms": ("first request wall", "ms", 2),
    "first_cpu_us": ("first request CPU", "us", 0),
    "warm_median_ms": ("warm request wall, median", "ms", 2),
    "warm_p99_ms": ("warm request wall, p99", "ms", 2),
    "warm_cpu_us": ("CPU per warm request", "us", 0),
    "peak_rss_mb": ("peak RSS", "MB", 2),
}


@dataclass(frozen=True)
class Config:
    """One way of running a bootstrap: `binary` (okta-resend or floor), the variables added
    to the Lambda environment, the 4 characters its factor ids carry, the token calls the
    sandbox must see from one instance, and whether it reaches Okta through the TLS proxy."""
    name: str
    binary: str
    env: dict = field(default_factory=dict)
    tag: str = ""
    token_calls: int = 0
    tls: bool = False


class RuntimeApi:
    """The part of the Lambda Runtime API a function uses (next, response, error, init
    error), on 127.0.0.1. HTTP/1.1 with keep-alive unless `protocol` is HTTP/1.0; every
    answer is one write with its Content-Length."""

    def __init__(self, protocol: str):
        self.events: queue.Queue = queue.Queue()
        self.responses: dict[str, tuple[float, dict]] = {}
        self.nexts = 0
        self.first_next: float | None = None
        self.init_error: str | None = None
        self.proc: subprocess.Popen | None = None
        self.changed = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def reply(self, status: int, headers: dict | None = None, body: bytes = b""):
                head = [f"{protocol} {status} {HTTPStatus(status).phrase}",
                        *(f"{name}: {value}" for name, value in (headers or {}).items()),
                        f"Content-Length: {len(body)}"]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                with api.changed:
                    api.nexts += 1
                    api.first_next = api.first_next or time.perf_counter()
                    api.changed.notify_all()
                item = api.events.get()
                if item is None:  # closing: the function has been stopped
                    self.close_connection = True
                    return
                request_id, event = item
                self.reply(200, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:okta-resend",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    "Content-Type": "application/json",
                }, json.dumps(event).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.strip("/").split("/")
                with api.changed:
                    if parts[-2:] == ["init", "error"]:
                        api.init_error = body.decode(errors="replace")
                    elif parts[-1] in ("response", "error"):
                        reply = json.loads(body or b"{}")
                        api.responses[parts[-2]] = (time.perf_counter(),
                                                    reply if parts[-1] == "response" else {"error": reply})
                    api.changed.notify_all()
                self.reply(202)

        # The relay's server: a backlog of 128 (socketserver's 5 can drop a SYN, which
        # comes again a second later), daemon threads, no traceback for a client gone.
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, what: str, done, timeout: float = 30) -> None:
        """Waits until `done()` (under the lock); fails at once if the function exits or
        reports an init error."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                if self.init_error:
                    raise StackError(f"init failed: {self.init_error}")
                if self.proc is not None and self.proc.poll() is not None:
                    raise StackError(f"the function exited with {self.proc.returncode} before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StackError(f"the function did not reach {what} within {timeout:.0f} s")
                self.changed.wait(min(left, 0.1))

    def invoke(self, event: dict) -> tuple[float, dict]:
        """Queues one event; returns (seconds until its response, the response) once the
        function is back at /next, idle, so that a CPU reading then counts all its work."""
        request_id = str(uuid.uuid4())
        with self.changed:
            nexts = self.nexts
        start = time.perf_counter()
        self.events.put((request_id, event))
        self.wait("the next /next", lambda: request_id in self.responses and self.nexts > nexts)
        finished, reply = self.responses.pop(request_id)
        return finished - start, reply

    def close(self) -> None:
        self.events.put(None)  # frees a /next still waiting
        self.server.shutdown()
        self.server.server_close()


class TlsProxy:
    """TLS on 127.0.0.1 in front of a loopback http:// service: one thread per accepted
    connection does the handshake, opens its own connection to the service and pumps bytes
    both ways (one thread per connection with select: an SSL object must not be read and
    written from two threads). `handshakes` counts the completed ones."""

    def __init__(self, upstream: str, cert: Path, key: Path):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.handshakes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.ExitStack() as closing:
            closing.callback(conn.close)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                tls = closing.enter_context(self.context.wrap_socket(conn, server_side=True))
                with self.lock:
                    self.handshakes += 1
                upstream = closing.enter_context(socket.create_connection(self.upstream))
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peer = {tls: upstream, upstream: tls}
                while True:
                    for ready in select.select([tls, upstream], [], [])[0]:
                        data = ready.recv(65536)
                        if not data:
                            return
                        while ready is tls and tls.pending():  # decrypted, not yet read
                            data += tls.recv(tls.pending())
                        peer[ready].sendall(data)
            except (OSError, ssl.SSLError):
                return  # a failed handshake or a closed peer: the connection ends

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()


def make_certificates() -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate for IP 127.0.0.1 and DNS localhost that it
    signed (EC P-256, valid one day), under .dev/bench-tls/: (the CA's PEM, the leaf's PEM,
    the leaf's key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def key_usage(**on) -> x509.KeyUsage:
        flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{flag: on.get(flag, False) for flag in flags})

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("okta-resend bench throwaway CA")

    def certificate(subject: x509.Name, key, *, ca: bool, extensions: list) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(ca_name, ca_key, ca=True, extensions=[(key_usage(key_cert_sign=True, crl_sign=True), True)])
    leaf = certificate(name("127.0.0.1"), leaf_key, ca=False, extensions=[
        (key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                      x509.DNSName("localhost")]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])
    TLS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TLS_DIR / "ca.pem", TLS_DIR / "leaf.pem", TLS_DIR / "leaf-key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].unlink(missing_ok=True)
    with os.fdopen(os.open(files[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return files


def sms_event(factor_id: str) -> dict:
    template = json.loads((ROOT / "events" / "apigw-v2-sms.json").read_text())
    # A user of its own for each factor: its timeline item holds one send, as a real user's
    # holds a few (see the docstring).
    user_id = "00u" + factor_id[3:]
    template["body"] = json.dumps({"userId": user_id, "factorId": factor_id, "phoneNumber": "+1 555 415 1337"})
    return template


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise StackError(f"no VmHWM in /proc/{pid}/status")


def cpu_by_thread(pid: int) -> dict[str, int]:
    """The CPU time each thread of the process has run so far, in ns (schedstat)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that ended meanwhile
            times[task.name] = int((task / "schedstat").read_text().split()[0])
    return times


def cpu_ms(before: dict[str, int], after: dict[str, int]) -> float:
    """CPU time run between two readings of cpu_by_thread, in ms."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e6


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def moto_answer_ms(moto_url: str, table: str) -> dict[str, float]:
    """Median wall time of MOTO_CALLS raw GetSecretValue calls and as many DynamoDB GetItem
    calls to the guard table (a new connection each, as urllib makes them), in ms."""
    def median_call(service: str, target: str, content_type: str, body: dict) -> float:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = {
            "X-Amz-Target": target,
            "Content-Type": content_type,
            "X-Amz-Date": stamp,
            "Authorization": (f"AWS4-HMAC-SHA256 Credential=testing/{stamp[:8]}/{REGION}/{service}/aws4_request, "
                              f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={'0' * 64}"),
        }
        times = []
        for _ in range(MOTO_CALLS):
            request = urllib.request.Request(moto_url, data=json.dumps(body).encode(), headers=headers, method="POST")
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    return {
        "get_secret_value_ms": median_call("secretsmanager", "secretsmanager.GetSecretValue",
                                           "application/x-amz-json-1.1", {"SecretId": SECRET_ID}),
        "get_item_ms": median_call("dynamodb", "DynamoDB_20120810.GetItem", "application/x-amz-json-1.0",
                                   {"TableName": table, "Key": {"pk": {"S": "bench-probe"}}}),
    }


def artifact(bootstrap: Path, zipped: bool) -> dict:
    """The bootstrap's size and, when `zipped`, the size of the zip Lambda would get: the
    bootstrap alone, deflated, as sam build and cargo lambda make it (MB, 10^6 bytes)."""
    sizes = {"bootstrap_mb": bootstrap.stat().st_size / 1e6, "zip_mb": None}
    if zipped:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(bootstrap, "bootstrap")
        sizes["zip_mb"] = len(buffer.getvalue()) / 1e6
    return sizes


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def build(mode: str) -> dict[str, Path]:
    """Builds the bootstraps (and the sandbox) for `mode`; returns their paths by binary."""
    names = {"okta-resend": "okta-resend", "floor": "okta-resend-floor"}
    if mode == "smoke":
        say("building the debug okta-resend, floor and Okta sandbox")
        subprocess.run(["cargo", "build", "--quiet", "-p", "okta-resend", "-p", "okta-resend-floor",
                        "--bin", "okta-resend", "--bin", "okta-resend-floor"], cwd=ROOT, check=True)
        paths = {binary: TARGET / "debug" / name for binary, name in names.items()}
    elif mode == "profile":
        say("building the release profile with symbols kept in target/profiling (minutes when cold)")
        env = dict(os.environ, CARGO_PROFILE_RELEASE_STRIP="false", CARGO_PROFILE_RELEASE_DEBUG="line-tables-only",
                   CARGO_TARGET_DIR=str(TARGET / "profiling"))
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "okta-resend"], cwd=ROOT, env=env,
                       check=True)
        paths = {"okta-resend": TARGET / "profiling" / "release" / "okta-resend"}
    else:
        say("building both release bootstraps as sam build does (cargo lambda build --release; minutes when cold)")
        env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
        argv = [VENV_BIN / "cargo-lambda", "lambda", "build", "--release"]
        for name in names.values():
            argv += ["-p", name, "--bin", name]
        subprocess.run(argv, cwd=ROOT, env=env, check=True)
        paths = {binary: TARGET / "lambda" / name / "bootstrap" for binary, name in names.items()}
    subprocess.run(["cargo", "build", "--quiet", "-p", "okta-sandbox"], cwd=ROOT, check=True)
    return paths


class GuardUnavailable(StackError):
    """A request answered 503 guard_unavailable: one of the guard's DynamoDB calls found no
    answer from moto within the function's 1 s call timeout."""


class Bench:
    """The stack (moto and the Okta sandbox), the TLS proxy and the bootstraps of one run.
    Each instance started gets a number of its own (`instances`), which its guard table and
    its factor ids carry. With `rerun`, an instance a request of which met
    GuardUnavailable is run again, once: moto (Python) can answer a call after a second on a
    loaded machine, and that says nothing of the function; every rerun is reported."""

    def __init__(self, stack: Stack, bootstraps: dict[str, Path], protocol: str, proxy: TlsProxy | None,
                 aws_url: str, rerun: bool):
        self.stack, self.bootstraps, self.protocol, self.proxy = stack, bootstraps, protocol, proxy
        # The function's AWS endpoint: moto behind the keep-alive relay.
        self.aws_url = aws_url
        self.rerun = rerun
        self.instances = 0
        self.reruns: list[str] = []

    def new_guard_table(self) -> str:
        """A new, empty guard table for the instance. moto's TransactWriteItems deep-copies
        the whole table for every item it writes, so its answer time grows with the table:
        each guarded instance gets its own, and every round and configuration meets the same
        moto."""
        name = f"{GUARD_TABLE}-{self.instances}"
        try:
            guard_table.create_table(self.stack.moto_url, name)
        except guard_table.GuardTableError as err:
            raise StackError(str(err)) from err
        return name

    def environment(self, runtime: RuntimeApi, config: Config) -> dict:
        guarded = "RESEND_GUARD_TABLE" in config.env
        return {
            "PATH": "/usr/bin:/bin",
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.port}",
            "AWS_LAMBDA_FUNCTION_NAME": "okta-resend",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/okta-resend",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.aws_url,
            "OKTA_ORG_URL": self.stack.okta_url,
            "OKTA_SECRET_ID": SECRET_ID,
            **config.env,
            **({"RESEND_GUARD_TABLE": self.new_guard_table()} if guarded else {}),
        }

    def measure(self, config: Config, warm: int | None, warm_hook=None) -> dict:
        """One cold start of `config` against its own Runtime API, then (unless `warm` is
        None: init only) its first request and `warm` more, each for a new factor; the
        process is stopped at the end. `warm_hook(pid)`, a context manager, wraps the warm
        loop (make profile's perf)."""
        try:
            return self.instance(config, warm, warm_hook)
        except GuardUnavailable as err:
            if not self.rerun:
                raise
            say(f"{err}: running {config.name} again, once")
            self.reruns.append(str(err))
            return self.instance(config, warm, warm_hook)

    def instance(self, config: Config, warm: int | None, warm_hook) -> dict:
        self.instances += 1
        runtime = RuntimeApi(self.protocol)
        tokens_before = self.stack.sandbox_oauth()["tokenRequests"]
        handshakes_before = self.proxy.handshakes if self.proxy else 0
        log = f".dev/logs/bench-{config.name}.log"
        try:
            env = self.environment(runtime, config)
            started = time.perf_counter()
            proc = runtime.proc = self.stack.spawn(f"bench-{config.name}", [self.bootstraps[config.binary]], env=env)
            try:
                runtime.wait("its first /next", lambda: runtime.first_next is not None)
                figures = {"init_wall_ms": (runtime.first_next - started) * 1000}
                at_init = cpu_by_thread(proc.pid)
                figures["init_cpu_ms"] = cpu_ms({}, at_init)
                if warm is not None:
                    figures.update(self.requests(runtime, config, warm, at_init, warm_hook))
            except StackError as err:
                raise type(err)(f"{config.name} (instance {self.instances}): {err} (see {log})") from None
            finally:
                stop_process(proc)
        finally:
            runtime.close()
        token_calls = self.stack.sandbox_oauth()["tokenRequests"] - tokens_before
        if token_calls != config.token_calls:
            raise StackError(f"{config.name}: {token_calls} token calls from one instance, "
                             f"{config.token_calls} expected (the service app's token is fetched at init, then kept)")
        if config.tls and self.proxy.handshakes == handshakes_before:
            raise StackError(f"{config.name}: no TLS handshake through the proxy: the run did not go over TLS")
        return figures

    def requests(self, runtime: RuntimeApi, config: Config, warm: int, at_init: dict, warm_hook) -> dict:
        """The first request and `warm` more: their wall and CPU figures, and the peak RSS."""
        pid = runtime.proc.pid

        def invoke(index: int) -> float:
            seconds, reply = runtime.invoke(sms_event(f"sms{config.tag}{self.instances:07d}{index:06d}"))
            if reply.get("statusCode") != 200:
                answer = f"request {index} answered {json.dumps(reply)[:300]}"
                unavailable = reply.get("statusCode") == 503 and "guard_unavailable" in reply.get("body", "")
                raise (GuardUnavailable if unavailable else StackError)(answer)
            return seconds * 1000

        first_wall = invoke(0)
        at_first = cpu_by_thread(pid)
        with warm_hook(pid) if warm_hook else contextlib.nullcontext():
            walls = [invoke(i) for i in range(1, warm + 1)]
        at_end = cpu_by_thread(pid)
        return {
            "first_wall_ms": first_wall,
            "first_cpu_us": cpu_ms(at_init, at_first) * 1000,
            "warm_median_ms": statistics.median(walls),
            "warm_p99_ms": percentile(walls, 0.99),
            "warm_cpu_us": cpu_ms(at_first, at_end) * 1000 / warm,
            "peak_rss_mb": peak_rss_mb(pid),
        }


def configurations(proxy: TlsProxy | None, ca: Path | None, per_table: int) -> list[Config]:
    """The configurations, in the order of a round (see the docstring). The guarded ones
    get a table of their own for every instance (Bench.new_guard_table), which sees `per_table`
    requests: the guard's caps and budget let them all through."""
    guarded = {
        **guard_env(),
        **{name: str(max(int(value), per_table)) for name, value in GENEROUS_LIMITS.items()},
        "RESEND_HOURLY_BUDGET": str(max(BENCH_BUDGET, per_table)),
    }
    configs = [
        Config("floor", "floor", tag="Flor"),
        Config("deployed", "okta-resend", guarded, tag="Depl"),
        Config("guard_off", "okta-resend", tag="GOff"),
        Config("both_off", "okta-resend", {"VERIFY_FACTOR": "false"}, tag="BOff"),
    ]
    if proxy is not None:
        configs.append(Config("tls", "okta-resend", {**guarded, "OKTA_ORG_URL": proxy.url,
                                                     "OKTA_RESEND_BENCH_ROOT_CA": str(ca)}, tag="TlsX", tls=True))
    configs.append(Config("oauth", "okta-resend", {**guarded, "OKTA_SECRET_ID": OAUTH_SECRET_ID}, tag="OAut",
                          token_calls=1))
    return configs


def run_rounds(bench: Bench, configs: list[Config], rounds: int, warm: int, cold_starts: int) -> dict:
    """Every configuration, `rounds` times, alternated; moto's answer time each round; then
    the alternated init-only cold starts of the two credentials."""
    raw = {config.name: [] for config in configs}
    moto = []
    for round_no in range(rounds):
        order = configs if round_no % 2 == 0 else configs[::-1]
        say(f"round {round_no + 1}/{rounds}: {', '.join(c.name for c in order)} ({warm} warm requests each)")
        moto.append(moto_answer_ms(bench.stack.moto_url, GUARD_TABLE))
        for config in order:
            raw[config.name].append(bench.measure(config, warm))
    say(f"{cold_starts} more cold starts of each credential, init only, alternated")
    by_name = {config.name: config for config in configs}
    cold = {"deployed": [], "oauth": []}
    for _ in range(cold_starts):
        for name in cold:
            cold[name].append(bench.measure(by_name[name], None))
    return {"raw": raw, "moto": moto, "cold_starts": cold, "reruns": bench.reruns}


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# -- the report ---------------------------------------------------------------------------

def number(value: float | None, digits: int, unit: str = "", signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:{'+' if signed else ''},.{digits}f}" + (f" {unit}" if unit else "")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|",
                      *(line(row) for row in rows)])


def targets_table(med: dict, moto: dict, artifacts: dict) -> str:
    """Each figure: okta-resend, the floor, the difference, issue 17's target and whether
    it is met."""
    floor = med["floor"]

    def row(label, unit, digits, value, base, limit=None, rule=""):
        verdict = "" if limit is None or value is None else ("met" if value <= limit else "not met")
        target = "" if limit is None else f"<= {number(limit, digits, unit)} ({rule})"
        difference = None if value is None or base is None else value - base
        return [label, number(value, digits, unit), number(base, digits, unit),
                number(difference, digits, unit, signed=True), target, verdict]

    def figure(config, key, limit=None, rule=""):
        label, unit, digits = FIGURES[key]
        return row(f"{config}: {label}", unit, digits, med[config][key], floor[key], limit, rule)

    def first_request(config):
        return figure(config, "first_wall_ms", TARGET_FIRST_RATIO * med[config]["warm_median_ms"],
                      f"{TARGET_FIRST_RATIO} x its warm median")

    resend, bare = artifacts["okta-resend"], artifacts["floor"]
    moto_ms = moto["get_secret_value_ms"]
    rows = [
        figure("deployed", "init_wall_ms", floor["init_wall_ms"] + TARGET_INIT_WALL_MS + moto_ms,
               f"floor + {TARGET_INIT_WALL_MS} ms + moto's GetSecretValue {moto_ms:.2f} ms"),
        figure("deployed", "init_cpu_ms", floor["init_cpu_ms"] + TARGET_INIT_CPU_MS,
               f"floor + {TARGET_INIT_CPU_MS} ms"),
        first_request("deployed"),
        figure("deployed", "first_cpu_us"),
        figure("deployed", "warm_median_ms"),
        figure("deployed", "warm_p99_ms"),
        figure("deployed", "warm_cpu_us", floor["warm_cpu_us"] + TARGET_WARM_CPU_US,
               f"floor + {TARGET_WARM_CPU_US} us"),
        figure("deployed", "peak_rss_mb", TARGET_RSS_MB, f"{TARGET_RSS_MB} MB"),
        row("bootstrap (x86_64)", "MB", 2, resend["bootstrap_mb"], bare["bootstrap_mb"]),
        row("zip (x86_64)", "MB", 2, resend["zip_mb"], bare["zip_mb"], TARGET_ZIP_MB, f"{TARGET_ZIP_MB} MB"),
        figure("guard_off", "init_cpu_ms"),
        figure("guard_off", "warm_cpu_us"),
        figure("both_off", "init_cpu_ms"),
        figure("both_off", "warm_cpu_us", floor["warm_cpu_us"] + TARGET_BOTH_OFF_WARM_CPU_US,
               f"floor + {TARGET_BOTH_OFF_WARM_CPU_US} us"),
    ]
    if "tls" in med:
        rows += [figure("tls", "init_wall_ms"), figure("tls", "init_cpu_ms"), first_request("tls"),
                 figure("tls", "first_cpu_us"), figure("tls", "warm_cpu_us")]
    return markdown_table(["figure", "okta-resend", "floor", "difference", "target", "met"], rows)


def configurations_table(med: dict) -> str:
    names = list(med)
    return markdown_table(["figure (median over rounds)", *names],
                          [[f"{label} ({unit})", *(number(med[name][key], digits) for name in names)]
                           for key, (label, unit, digits) in FIGURES.items()])


def handshake_table(med: dict) -> str:
    rows = []
    for key in ("init_wall_ms", "init_cpu_ms", "first_wall_ms", "first_cpu_us"):
        label, unit, digits = FIGURES[key]
        tls, deployed = med["tls"][key], med["deployed"][key]
        rows.append([label, number(tls, digits, unit), number(deployed, digits, unit),
                     number(tls - deployed, digits, unit, signed=True)])
    return markdown_table(["figure", "tls", "deployed", "TLS handshake (tls - deployed)"], rows)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")

    def git(*args) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "kernel": platform.release(), "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def report(results: dict, raw_file: str) -> str:
    """The whole report, Markdown (also what is printed); `raw_file` holds the raw figures."""
    s, host = results["settings"], results["machine"]
    med = results["medians"]
    moto = results["moto_ms"]
    build = ("debug builds (smoke: the numbers mean nothing)" if s["smoke"]
             else "release bootstraps (cargo lambda build --release)")
    parts = [
        "# make bench: okta-resend beside the floor",
        f"Machine: {host['nproc']} CPUs, {host['cpu']}, Linux {host['kernel']}. Date: {host['date']}. "
        f"Commit: {host['commit']}.",
        f"ROUNDS={s['rounds']} rounds, each giving every configuration one cold start, its first request and "
        f"WARM={s['warm']} warm requests, in an order reversed every other round; {build}; Runtime API emulation "
        f"over {s['runtime_api']} with keep-alive{'' if s['runtime_api'] == 'HTTP/1.1' else ' off'}. "
        "Every figure is the median over rounds; CPU is the process's own (all threads), what Lambda bills; "
        f"MB are 10^6 bytes. scripts/bench.py says how each is measured; the raw figures are in {raw_file}.",
        f"moto's own answer time (not the function's): GetSecretValue {moto['get_secret_value_ms']:.2f} ms, "
        f"DynamoDB GetItem {moto['get_item_ms']:.2f} ms (median of {MOTO_CALLS} raw calls from Python, "
        "a new connection each, median over rounds). Wall time a request does not spend on CPU is spent "
        "waiting for moto (Python; its TransactWriteItems copies the table for every item it writes) or the "
        "sandbox: the guarded configurations' wall times are mostly moto's, their CPU is the function's.",
        "## Issue 17's targets (deployed: guard and factor check on, API token)",
        targets_table(med, moto, results["artifacts"]),
        "## Every configuration",
        configurations_table(med),
    ]
    if "tls" in med:
        parts += ["## TLS handshake", "Okta over TLS (a local TLS proxy before the sandbox, its throwaway CA "
                  "trusted through OKTA_RESEND_BENCH_ROOT_CA) against the same over plain HTTP.", handshake_table(med)]
    else:
        parts += ["The tls configuration was skipped (BENCH_TLS=0)."]
    oauth = results["oauth_cold_starts"]
    parts += [
        "## OAuth service app",
        f"One token call per instance, at init, then kept. Its cold start against the API token's, "
        f"{s['cold_starts']} init-only cold starts each, alternated: init wall {oauth['oauth']['init_wall_ms']:.1f} ms "
        f"against {oauth['deployed']['init_wall_ms']:.1f} ms ({oauth['wall_cost_ms']:+.1f} ms), init CPU "
        f"{oauth['oauth']['init_cpu_ms']:.2f} ms against {oauth['deployed']['init_cpu_ms']:.2f} ms "
        f"({oauth['cpu_cost_ms']:+.2f} ms).",
    ]
    reruns = results["runs"]["reruns"]
    if reruns:
        parts.append(f"{len(reruns)} instance(s) run again after moto answered one of the guard's calls too late "
                     f"(503 guard_unavailable; listed in {raw_file}, runs.reruns).")
    return "\n\n".join(parts) + "\n"


# -- the modes ----------------------------------------------------------------------------

def perf_recording(stack: Stack, output: Path):
    """A warm hook for Bench.measure: perf record attached to the process for the warm
    loop only, stopped with SIGINT (so it writes its data) when the loop ends."""
    @contextlib.contextmanager
    def attached(pid: int):
        perf = stack.spawn("perf", ["perf", "record", "-e", "cpu-clock", "-F", "4999", "-g", "-p", pid, "-o", output])
        time.sleep(1)  # time to attach: perf says nothing when it has
        if perf.poll() is not None:
            raise StackError(f"perf record exited with {perf.returncode}; see .dev/logs/perf.log")
        try:
            yield
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)

    return attached


def profile(bench: Bench, config: Config) -> None:
    data = DEV / "perf.data"
    say(f"profiling {config.name}: {PROFILE_WARM} warm requests under perf record")
    bench.measure(config, PROFILE_WARM, warm_hook=perf_recording(bench.stack, data))

    def perf_report(sort: str, lines: int) -> str:
        """perf report's entries (and its sample count), without the IPC columns perf adds
        with nothing in them for cpu-clock, and each cut to 200 characters (Rust's closure
        names run to hundreds)."""
        out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort, "--stdio", "-g", "none"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        kept = [re.sub(r"(\s+-\s+-)?\s*$", "", line)[:200] for line in out
                if line.strip() and (not line.startswith("#") or "Samples" in line)]
        return "\n".join(kept[:lines])

    text = (f"make profile: {config.name}, {PROFILE_WARM} warm requests, perf record -e cpu-clock -F 4999 -g "
            f"(release profile with symbols, {bench.bootstraps['okta-resend'].relative_to(ROOT)})\n\n"
            f"By dso and symbol (self time, top 60):\n{perf_report('dso,symbol', 61)}\n\n"
            f"By dso:\n{perf_report('dso', 30)}\n")
    (DEV / "profile.txt").write_text(text)
    print("\n" + text + "(written to .dev/profile.txt)")


def settings(mode: str) -> dict:
    values = SMOKE if mode == "smoke" else DEFAULTS
    chosen = {name.lower(): int(os.environ.get(name, default)) if mode != "smoke" else default
              for name, default in values.items()}
    if chosen["rounds"] < 1 or not 1 <= chosen["warm"] <= 999_999 or chosen["cold_starts"] < 1:
        raise StackError(f"ROUNDS (1 or more), WARM (1-999999) and COLD_STARTS (1 or more), not {chosen}")
    http10 = os.environ.get("BENCH_RUNTIME_HTTP") == "1.0"
    return {**chosen, "smoke": mode == "smoke", "tls": os.environ.get("BENCH_TLS", "1") != "0",
            "runtime_api": "HTTP/1.0" if http10 else "HTTP/1.1"}


def run(mode: str) -> int:
    s = settings(mode)
    if mode == "profile":
        name = os.environ.get("PROFILE_CONFIG") or "deployed"
        if name not in PROFILE_CONFIGS:
            raise StackError(f"PROFILE_CONFIG={name}: one of {', '.join(PROFILE_CONFIGS)}")
        s.update(rounds=1, warm=PROFILE_WARM, tls=False)
    bootstraps = build(mode)
    stack = Stack(quiet_function=True, sms_cooldown_ms=30_000, email_cooldown_ms=5_000, port=None,
                  # 2 Okta calls per request: far above Okta's default 600 a minute.
                  okta_rate_limit=1_000_000,
                  # The sandbox knows the service app too; the stack's secret stays the API token.
                  service_app=True)
    proxy = relay = None
    try:
        stack.start_moto()
        relay = KeepAliveRelay(stack.moto_url)
        stack.start_sandbox()
        stack.put_secret(OAUTH_SECRET_ID, stack.app.secret(dpop=False))
        ca = None
        if s["tls"]:
            ca, leaf, leaf_key = make_certificates()
            proxy = TlsProxy(stack.okta_url, leaf, leaf_key)
            say(f"TLS proxy on {proxy.url} before the sandbox (CA {ca.relative_to(ROOT)})")
        bench = Bench(stack, bootstraps, s["runtime_api"], proxy, relay.url, rerun=mode != "smoke")
        configs = configurations(proxy, ca, per_table=s["warm"] + 1)
        if mode == "profile":
            profile(bench, next(c for c in configs if c.name == name))
            return 0
        measured = run_rounds(bench, configs, s["rounds"], s["warm"], s["cold_starts"])
    finally:
        for server in (proxy, relay):
            if server is not None:
                server.stop()
        stack.stop()

    cold = {name: medians(runs) for name, runs in measured["cold_starts"].items()}
    results = {
        "settings": s,
        "machine": machine(),
        "moto_ms": medians(measured["moto"]),
        "medians": {name: medians(runs) for name, runs in measured["raw"].items()},
        "artifacts": {binary: artifact(path, zipped=mode != "smoke") for binary, path in bootstraps.items()},
        "oauth_cold_starts": {**cold, "wall_cost_ms": cold["oauth"]["init_wall_ms"] - cold["deployed"]["init_wall_ms"],
                              "cpu_cost_ms": cold["oauth"]["init_cpu_ms"] - cold["deployed"]["init_cpu_ms"]},
        "runs": measured,
    }
    stem = "bench-smoke" if mode == "smoke" else "bench"
    text = report(results, f".dev/{stem}.json")
    (DEV / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (DEV / f"{stem}.md").write_text(text)
    written = [f".dev/{stem}.json", f".dev/{stem}.md"]
    if mode != "smoke":
        RESULTS.write_text(text)
        written.insert(0, str(RESULTS.relative_to(ROOT)))
    print("\n" + text)
    say(f"written: {', '.join(written)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="make bench-smoke (also BENCH_SMOKE=1)")
    parser.add_argument("--profile", action="store_true", help="make profile (PROFILE_CONFIG)")
    args = parser.parse_args()
    mode = "profile" if args.profile else "smoke" if args.smoke or os.environ.get("BENCH_SMOKE") == "1" else "bench"

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        return run(mode)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (StackError, subprocess.CalledProcessError) as err:
        say(f"failed: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
