#!/usr/bin/env python3
"""make bench: what the deployed artifact costs at cold start and per request.

Builds the release `bootstrap` exactly as `sam build` does (cargo lambda build --release),
then runs it as Lambda would: against a Runtime API (a small emulation here, on
127.0.0.1), reading its secrets from moto, with the shared guard on against moto's
DynamoDB (as deployed), and calling the local Okta sandbox. Reports:

  artifact size      the stripped bootstrap binary
  init               process start -> first /next call (config, AWS SDK set-up, the Okta
                     secret and the guard's key read)
  first invocation   the first request after init (new TLS-free connection to the sandbox)
  warm invocations   median and p99 of the following requests (guard on, factor check on)
  CPU                user + system time of the function process at init and per warm request
                     (from /proc; what Lambda bills at 128 MB, where 1 ms of CPU is about
                     14 ms of wall time), and what the guard's DynamoDB calls add
  peak RSS           VmHWM of the function process at the end
  factor check off   the same warm figures with VERIFY_FACTOR=false: what the check costs
  guard off          the same warm figures without RESEND_GUARD_TABLE: what the guard costs
                     (its pre-check read and its commit, against moto)
  OAuth              the same figures as deployed (guard on, factor check on) with the Okta
                     credential an OAuth 2.0 service app instead of the API token (its secret
                     okta-resend/local-oauth, a key pair made for the run, Bearer tokens from
                     the sandbox's token endpoint; its own guard table, so moto's grown table
                     does not weigh on it), and what its cold start costs more: the first
                     token fetched at init (a signed client assertion, one token call). That
                     difference is the median of COLD_STARTS (7) more cold starts of each
                     credential, alternated, since one cold start against another is noise.

Every warm invocation is for one user and one number, from one source address (a new
factor each time, so no cooldown applies): the bench raises the guard's per-user,
per-number, per-prefix and per-address caps (scripts/stack.py, GENEROUS_LIMITS) and the hourly budget (BENCH_BUDGET) so that none
refuses, while every one of them is still checked and counted.

Numbers are wall-clock on this machine and loopback services: compare runs, do not read
them as Lambda's. Nothing here fails on a number; the results go to .dev/bench.json.
"""

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import DEV, ROOT, SECRET_ID, REGION, VENV_BIN, GUARD_TABLE, Stack, StackError, guard_env, say  # noqa: E402
import guard_table  # noqa: E402

WARM_INVOCATIONS = 200
# The guarded runs send 2 x (1 + WARM_INVOCATIONS) sms in one clock hour: above the default
# budget's 1000 if WARM_INVOCATIONS grows. Non-zero, so the budget item is still in every
# commit (0 would leave it out and flatter the guard's cost).
BENCH_BUDGET = "1000000"
USER = "00ub0oNGTSWTBKOLGLNR"
# The OAuth run's secret (the service app, Bearer) and guard table, beside the stack's.
OAUTH_SECRET_ID = SECRET_ID + "-oauth"
OAUTH_GUARD_TABLE = GUARD_TABLE + "-oauth"
# Cold starts of each credential, init only, for the difference between them.
COLD_STARTS = 7
BOOTSTRAP = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "lambda" / "okta-resend" / "bootstrap"


class RuntimeApi:
    """The part of the Lambda Runtime API a function uses: next, response, error."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.responses: dict[str, tuple[float, dict]] = {}
        self.first_next: float | None = None
        self.init_error: str | None = None
        self.done = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                if api.first_next is None:
                    api.first_next = time.perf_counter()
                request_id, event = api.events.get()
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:okta-resend")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.strip("/").split("/")
                if parts[-2:] == ["init", "error"]:
                    api.init_error = body.decode(errors="replace")
                elif parts[-1] in ("response", "error"):
                    with api.done:
                        reply = json.loads(body or b"{}")
                        api.responses[parts[-2]] = (time.perf_counter(), reply if parts[-1] == "response" else {"error": reply})
                        api.done.notify_all()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: dict, timeout: float = 30) -> tuple[float, dict]:
        """Queues one event; returns (seconds until the response, the response)."""
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        self.events.put((request_id, event))
        with self.done:
            if not self.done.wait_for(lambda: request_id in self.responses, timeout):
                raise StackError("the function did not answer an invocation within 30 s")
        finished, reply = self.responses.pop(request_id)
        return finished - start, reply


def sms_event(factor_id: str) -> dict:
    template = json.loads((ROOT / "events" / "apigw-v2-sms.json").read_text())
    template["body"] = json.dumps({"userId": USER, "factorId": factor_id, "phoneNumber": "+1 555 415 1337"})
    return template


def peak_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ms(pid: int) -> float:
    """The CPU time the process's threads have run so far, in ms: the sum over
    /proc/PID/task/*/schedstat of their run time in nanoseconds (utime and stime in
    /proc/PID/stat count 10 ms ticks, too coarse for an init of a few ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e6


def function_env(stack: Stack, runtime: RuntimeApi, extra_env: dict) -> dict:
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
        "AWS_ENDPOINT_URL": stack.moto_url,
        "OKTA_ORG_URL": stack.okta_url,
        "OKTA_SECRET_ID": SECRET_ID,
        **extra_env,
    }


def start_bootstrap(stack: Stack, runtime: RuntimeApi, name: str, extra_env: dict):
    """Starts the bootstrap against `runtime`; returns (the process, init wall ms: start ->
    first /next, init CPU ms)."""
    started = time.perf_counter()
    proc = stack.spawn(name, [BOOTSTRAP], env=function_env(stack, runtime, extra_env))
    stack.wait_until("the function's first /next", lambda: runtime.first_next is not None, 30, proc,
                     f".dev/logs/{name}.log")
    if runtime.init_error:
        raise StackError(f"init failed: {runtime.init_error}")
    return proc, (runtime.first_next - started) * 1000, cpu_ms(proc.pid)


def cold_start(stack: Stack, name: str, extra_env: dict) -> tuple[float, float]:
    """One cold start alone: (init wall ms, init CPU ms); the process is stopped at its
    first /next."""
    runtime = RuntimeApi()
    try:
        proc, init_ms, init_cpu = start_bootstrap(stack, runtime, name, extra_env)
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        runtime.server.shutdown()
    return init_ms, init_cpu


def run_function(stack: Stack, name: str, extra_env: dict, factor_prefix: str) -> dict:
    """Starts the bootstrap against its own Runtime API with `extra_env`, then times init,
    the first invocation and WARM_INVOCATIONS more, each for a new factor (no cooldown)."""
    if len(factor_prefix) != 14:
        raise StackError(f"factor prefix {factor_prefix!r}: 14 characters, so that ids are 20")
    runtime = RuntimeApi()
    try:
        proc, init_ms, init_cpu = start_bootstrap(stack, runtime, name, extra_env)

        first_s, reply = runtime.invoke(sms_event(f"{factor_prefix}000000"))
        if reply.get("statusCode") != 200:
            raise StackError(f"first invocation answered {reply}")
        warm_cpu_start = cpu_ms(proc.pid)
        warm = []
        for i in range(WARM_INVOCATIONS):
            seconds, reply = runtime.invoke(sms_event(f"{factor_prefix}{i + 1:06d}"))
            if reply.get("statusCode") != 200:
                raise StackError(f"warm invocation {i} answered {reply}")
            warm.append(seconds * 1000)
        warm_cpu = cpu_ms(proc.pid) - warm_cpu_start
        rss = peak_rss_kib(proc.pid)
    finally:
        runtime.server.shutdown()
    warm.sort()
    return {
        "init_ms": round(init_ms, 1),
        "first_invocation_ms": round(first_s * 1000, 1),
        "warm_median_ms": round(statistics.median(warm), 2),
        "warm_p99_ms": round(warm[int(len(warm) * 0.99) - 1], 2),
        "warm_invocations": len(warm),
        "init_cpu_ms": round(init_cpu, 1),
        "warm_cpu_us_per_request": round(warm_cpu * 1000 / len(warm)),
        "peak_rss_kib": rss,
    }


def main() -> int:
    say("building the release bootstrap as sam build does (cargo lambda build --release; minutes when cold)")
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([VENV_BIN / "cargo-lambda", "lambda", "build", "--release", "--bin", "okta-resend"],
                   cwd=ROOT, env=env, check=True)
    subprocess.run(["cargo", "build", "--quiet", "-p", "okta-sandbox"], cwd=ROOT, check=True)

    stack = Stack(quiet_function=True, sms_cooldown_ms=30_000, email_cooldown_ms=5_000, port=None,
                  # Each run makes 2 Okta calls per request: above Okta's default 600 a minute.
                  okta_rate_limit=1_000_000,
                  # The sandbox knows the service app too; the stack's secret stays the API token.
                  service_app=True)
    try:
        stack.start_moto()
        stack.start_sandbox()
        # The OAuth run's secret (a service app, Bearer tokens) and its own guard table.
        stack.put_secret(OAUTH_SECRET_ID, stack.app.secret(dpop=False))
        try:
            guard_table.create_table(stack.moto_url, OAUTH_GUARD_TABLE)
        except guard_table.GuardTableError as err:
            raise StackError(str(err)) from err
        # As deployed (guard on, factor check on); then without the guard, and without the
        # guard and the factor check: each difference is what one costs per request. The
        # factor check is measured with the guard off, so moto's own latency (which grows
        # with its table) does not hide it.
        guarded = {**guard_env(), "RESEND_HOURLY_BUDGET": BENCH_BUDGET}
        results = run_function(stack, "bench-function", guarded, "smsBenchFactor")
        results["guard_off"] = run_function(stack, "bench-function-guard-off", {}, "smsBenchNoGard")
        results["guard_off_factor_check_off"] = run_function(
            stack, "bench-function-bare", {"VERIFY_FACTOR": "false"}, "smsBenchOffChk")
        # The same as deployed, with the service app: its first token is fetched at init and
        # kept, so the sandbox must have issued exactly one, and none to the API token runs.
        oauth_env = {**guarded, "OKTA_SECRET_ID": OAUTH_SECRET_ID, "RESEND_GUARD_TABLE": OAUTH_GUARD_TABLE}
        before = stack.sandbox_oauth()
        if before["tokenRequests"] != 0:
            raise StackError(f"the API token run called the token endpoint: {before}")
        oauth = run_function(stack, "bench-function-oauth", oauth_env, "smsBenchOAuthF")
        after = stack.sandbox_oauth()
        oauth["tokens_issued"] = after["tokensIssued"] - before["tokensIssued"]
        oauth["token_requests"] = after["tokenRequests"] - before["tokenRequests"]
        if oauth["tokens_issued"] != 1 or after["lastError"] is not None:
            raise StackError(f"the OAuth run should have fetched one token at init and kept it: {after}")
        results["oauth"] = oauth
        # Init alone, COLD_STARTS times each, alternated: the cold-start difference.
        say(f"{COLD_STARTS} more cold starts of each credential, init only")
        inits = {"token": [], "oauth": []}
        for i in range(COLD_STARTS):
            inits["token"].append(cold_start(stack, "bench-cold-token", guarded))
            inits["oauth"].append(cold_start(stack, "bench-cold-oauth", oauth_env))
    finally:
        stack.stop()

    results = {"artifact_bytes": BOOTSTRAP.stat().st_size, **results}
    unguarded = results["guard_off"]
    bare = results["guard_off_factor_check_off"]
    # What the guard adds to a warm request (the pre-check read and the commit, on moto),
    # and what the factor check adds (one more Okta call on the kept-alive connection).
    results["guard_cost_warm_median_ms"] = round(results["warm_median_ms"] - unguarded["warm_median_ms"], 2)
    results["factor_check_cost_warm_median_ms"] = round(unguarded["warm_median_ms"] - bare["warm_median_ms"], 2)
    results["guard_cost_cpu_us_per_request"] = results["warm_cpu_us_per_request"] - unguarded["warm_cpu_us_per_request"]
    # What the service app's cold start costs more than the API token's: the medians of the
    # alternated init-only cold starts (the token fetched at init, and the DPoP key made
    # for the instance whether or not it is used).
    medians = {cred: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for cred, runs in inits.items()}
    results["cold_starts"] = {
        "count_each": COLD_STARTS,
        **{f"{cred}_init_median_ms": round(wall, 1) for cred, (wall, _) in medians.items()},
        **{f"{cred}_init_cpu_median_ms": round(cpu, 1) for cred, (_, cpu) in medians.items()},
        **{f"{cred}_init_ms": [round(w, 1) for w, _ in runs] for cred, runs in inits.items()},
        **{f"{cred}_init_cpu_ms": [round(c, 1) for _, c in runs] for cred, runs in inits.items()},
    }
    results["oauth_cold_start_cost_ms"] = round(medians["oauth"][0] - medians["token"][0], 1)
    results["oauth_cold_start_cost_cpu_ms"] = round(medians["oauth"][1] - medians["token"][1], 1)
    oauth = results["oauth"]
    results["oauth_cost_warm_median_ms"] = round(oauth["warm_median_ms"] - results["warm_median_ms"], 2)
    results["oauth_cost_cpu_us_per_request"] = oauth["warm_cpu_us_per_request"] - results["warm_cpu_us_per_request"]
    (DEV / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    rss = results["peak_rss_kib"]
    print(f"""
okta-resend release bootstrap ({BOOTSTRAP.relative_to(ROOT)})
  artifact size        {results['artifact_bytes'] / 1e6:.2f} MB
  init                 {results['init_ms']} ms  (start -> first /next: config, SDK, both secrets read from moto)
  first invocation     {results['first_invocation_ms']} ms
  warm invocations     median {results['warm_median_ms']} ms, p99 {results['warm_p99_ms']} ms  ({results['warm_invocations']} requests; guard on, factor check on)
  CPU                  init {results['init_cpu_ms']} ms; {results['warm_cpu_us_per_request']} us per warm request (guard off: {unguarded['warm_cpu_us_per_request']} us, and factor check off: {bare['warm_cpu_us_per_request']} us; the guard's DynamoDB calls cost {results['guard_cost_cpu_us_per_request']} us a request)
  peak RSS             {rss / 1024 if rss else float('nan'):.1f} MiB
  guard off            warm median {unguarded['warm_median_ms']} ms, p99 {unguarded['warm_p99_ms']} ms (no RESEND_GUARD_TABLE; the guard costs {results['guard_cost_warm_median_ms']} ms at the median, against moto)
  and factor check off warm median {bare['warm_median_ms']} ms, p99 {bare['warm_p99_ms']} ms (VERIFY_FACTOR=false too; the factor check costs {results['factor_check_cost_warm_median_ms']} ms at the median)

OAuth 2.0 service app instead of the API token (Bearer; guard on, factor check on)
  init                 {oauth['init_ms']} ms  (as above, and the first access token fetched: a signed client assertion, one token call)
  first invocation     {oauth['first_invocation_ms']} ms
  warm invocations     median {oauth['warm_median_ms']} ms, p99 {oauth['warm_p99_ms']} ms  ({oauth['warm_invocations']} requests; {results['oauth_cost_warm_median_ms']:+} ms at the median against the API token)
  CPU                  init {oauth['init_cpu_ms']} ms; {oauth['warm_cpu_us_per_request']} us per warm request ({results['oauth_cost_cpu_us_per_request']:+} us against the API token)
  peak RSS             {oauth['peak_rss_kib'] / 1024 if oauth['peak_rss_kib'] else float('nan'):.1f} MiB
  token calls          {oauth['tokens_issued']} token issued for {oauth['warm_invocations'] + 1} requests ({oauth['token_requests']} token call: fetched at init, then kept)
  cold starts          init median {medians['oauth'][0]:.1f} ms wall, {medians['oauth'][1]:.1f} ms CPU; API token {medians['token'][0]:.1f} ms, {medians['token'][1]:.1f} ms ({COLD_STARTS} each, alternated)
OAuth cold start costs {results['oauth_cold_start_cost_ms']} ms wall / {results['oauth_cold_start_cost_cpu_ms']} ms CPU more than the API token (the token fetch at init)
(results in .dev/bench.json; loopback services, this machine's clock: compare runs, not absolutes)""")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (StackError, subprocess.CalledProcessError) as err:
        say(f"failed: {err}")
        sys.exit(1)
