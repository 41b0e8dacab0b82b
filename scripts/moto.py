#!/usr/bin/env python3
"""The one way this repository starts moto (the real AWS wire protocol for Secrets
Manager and DynamoDB), on 127.0.0.1, for as long as it is needed and never longer.

    moto.py run [--serial] [--front] [--serial-too] [--front-too] [--port N] -- CMD ARGS...
        runs CMD with MOTO_ENDPOINT=http://127.0.0.1:PORT in its environment (and, with
        --serial-too, a second, one-request-at-a-time moto as MOTO_SERIAL_ENDPOINT; with
        --front-too, a third, one-request-at-a-time moto behind its own DynamoDB front as
        MOTO_FRONT_ENDPOINT); exits with CMD's status (make test)
    moto.py serve [--serial] [--front] [--port N]
        prints one line, {"event":"listening","endpoint":"http://127.0.0.1:PORT"}, once moto
        answers, then serves until its stdin closes or it is killed (the Rust tests'
        `Moto::start`, when MOTO_ENDPOINT is not set)

`--front` puts scripts/dynamo_front.py in front of the moto started (serial or threaded):
the endpoint exported or printed is then the front's, and everything, Secrets Manager
included, goes through it. The front forwards every request to moto one at a time and
answers DynamoDB's transaction conflicts by DynamoDB's rules (TransactionConflictException,
TransactionCanceledException with `TransactionConflict` reasons), which moto never does;
`GET /__front/stats` on it counts them. A write stays in flight for $DYNAMO_FRONT_HOLD_MS
(default 20) after moto answered it. With a front, `--port` is the front's port (moto
takes a free one).

As a module (scripts/stack.py): `start(log=...)` returns a running `MotoServer` (its
`endpoint` and `proc`, the head of its own process group), `running(...)` is the same
as a context manager. `start(front=True, hold_ms=N)` adds the front: `endpoint` is then
the front's, `moto_endpoint` moto's, and `front.proc` heads a second process group;
`stop()` stops both.

moto is the threaded `moto_server` (the one in .venv, or $MOTO_SERVER). `--serial` serves
moto's app one request at a time instead (werkzeug, threaded=False), with the Python beside
that `moto_server`: the threaded server can apply two conflicting DynamoDB transactions
at once, real DynamoDB cannot (see TOOLCHAIN.md). Each moto, and each front, logs to a file
under .dev/logs/ (a front beside its moto: moto-run.log, moto-run.front.log) and is
stopped, with its process group, on exit, on failure and on SIGINT/SIGTERM/SIGHUP; on
Linux it also dies with the process that started it.

Standard library only: this file starts moto, it never imports it.
"""

import argparse
import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRONT = Path(__file__).resolve().parent / "dynamo_front.py"
LOGS = ROOT / ".dev" / "logs"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 20
STOP_TIMEOUT_S = 5

# moto's app served one request at a time (TOOLCHAIN.md, "DynamoDB through moto"); the
# port is its one argument.
SERIAL_SERVER = (
    "import sys; from werkzeug.serving import run_simple; "
    "from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app; "
    "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), "
    "threaded=False, request_handler=MotoRequestHandler)"
)


class MotoError(Exception):
    pass


class Interrupted(Exception):
    """A SIGINT, SIGTERM or SIGHUP arrived while moto was starting or serving."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def moto_server() -> Path:
    """The threaded server: $MOTO_SERVER, else the one `make tools` installs in .venv."""
    return Path(os.environ.get("MOTO_SERVER") or ROOT / ".venv" / "bin" / "moto_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_argv(port: int, serial: bool) -> list[str]:
    program = moto_server()
    if not program.exists():
        raise MotoError(f"{program} not found: run `make tools` (it installs moto into .venv)")
    if not serial:
        return [str(program), "-H", HOST, "-p", str(port)]
    python = program.parent / "python"
    if not python.exists():
        raise MotoError(f"no Python beside {program} to serve moto one request at a time")
    # -P: not the current directory on sys.path, so nothing there can stand in for moto.
    return [str(python), "-P", "-c", SERIAL_SERVER, str(port)]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies, so even a
    SIGKILLed launcher leaves no moto behind (Linux; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stops `proc` and its process group: SIGTERM, then SIGKILL after 5 s. Idempotent."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class FrontServer:
    """One running DynamoDB front (scripts/dynamo_front.py): `endpoint`, `proc` (its own
    process group's leader) and `log`."""

    def __init__(self, endpoint: str, proc: subprocess.Popen, log: Path):
        self.endpoint = endpoint
        self.proc = proc
        self.log = log

    def stop(self) -> None:
        _stop(self.proc)


class MotoServer:
    """One running moto: `endpoint`, `proc` (its own process group's leader) and `log`.
    With a front, `endpoint` is the front's, `moto_endpoint` moto's own, and `front` the
    `FrontServer` (None without one)."""

    def __init__(self, endpoint: str, proc: subprocess.Popen, log: Path):
        self.endpoint = endpoint
        self.moto_endpoint = endpoint
        self.proc = proc
        self.log = log
        self.front: FrontServer | None = None

    def stop(self) -> None:
        """Stops the front, then moto, each with its process group: SIGTERM, then SIGKILL
        after 5 s. Idempotent."""
        if self.front is not None:
            self.front.stop()
        _stop(self.proc)


def start(*, serial: bool = False, port: int | None = None, log: Path | None = None,
          append: bool = False, front: bool = False, hold_ms: float | None = None) -> MotoServer:
    """Starts moto and returns it once `GET /moto-api/` answers. `port` None picks a free
    one (and another if that one is taken by the time moto binds it). The log goes to `log`
    (default .dev/logs/moto.log), appended to with `append` (for several motos at once).
    With `front`, a DynamoDB front (scripts/dynamo_front.py) is started in front of moto,
    on `port` if given (moto then takes a free one), logging to `<log>.front.log`, holding
    each write `hold_ms` after moto answered it (None: $DYNAMO_FRONT_HOLD_MS, else 20); the
    server's `endpoint` is the front's. On any failure, Ctrl-C included, every process
    started is stopped before the error propagates."""
    log = log or LOGS / "moto.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = _start_moto(serial=serial, port=None if front else port, log=log, append=append)
    if front:
        try:
            server.front = start_front(server.moto_endpoint, port=port, hold_ms=hold_ms,
                                       log=log.with_name(f"{log.stem}.front.log"), append=append)
        except BaseException:
            server.stop()
            raise
        server.endpoint = server.front.endpoint
    return server


def _start_moto(*, serial: bool, port: int | None, log: Path, append: bool) -> MotoServer:
    attempts = 1 if port else 3
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        endpoint = f"http://{HOST}:{chosen}"
        argv = server_argv(chosen, serial)
        with open(log, "ab" if append else "wb") as out:
            offset = out.tell()
            out.write(f"--- moto.py: {'serial' if serial else 'threaded'} moto on {endpoint} "
                      f"(launcher pid {os.getpid()})\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        server = MotoServer(endpoint, proc, log)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not answers(endpoint):
                if proc.poll() is not None:
                    output = _read_from(log, offset)
                    if attempt < attempts and "in use" in output:
                        break  # the free port was taken meanwhile: try another
                    raise MotoError(f"moto exited with {proc.returncode}; see {_shown(log)}:\n{output}")
                if time.monotonic() > deadline:
                    raise MotoError(f"moto did not answer on {endpoint} within {READY_TIMEOUT_S} s; "
                                    f"see {_shown(log)}")
                time.sleep(0.05)
            else:
                return server
        except BaseException:
            server.stop()
            raise
    raise MotoError(f"moto found no free port in {attempts} attempts; see {_shown(log)}")


def start_front(moto_endpoint: str, *, port: int | None = None, hold_ms: float | None = None,
                log: Path | None = None, append: bool = False) -> FrontServer:
    """Starts scripts/dynamo_front.py in front of `moto_endpoint` and returns it once it
    has printed its `listening` line (its endpoint). `port` None lets it pick a free one.
    Its log (stderr) goes to `log` (default .dev/logs/dynamo-front.log). On any failure,
    Ctrl-C included, the process is stopped before the error propagates."""
    log = log or LOGS / "dynamo-front.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(FRONT), "--moto", moto_endpoint, "--port", str(port or 0)]
    if hold_ms is not None:
        argv += ["--hold-ms", str(hold_ms)]
    with open(log, "ab" if append else "wb") as out:
        offset = out.tell()
        out.write(f"--- moto.py: DynamoDB front before {moto_endpoint} (launcher pid {os.getpid()})\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=out, start_new_session=True, preexec_fn=_die_with_parent)
    front = FrontServer("", proc, log)
    try:
        line = _first_line(proc, READY_TIMEOUT_S)
        if line is None:
            if proc.poll() is not None:
                raise MotoError(f"the DynamoDB front exited with {proc.returncode}; see {_shown(log)}:\n"
                                f"{_read_from(log, offset)}")
            raise MotoError(f"the DynamoDB front did not start within {READY_TIMEOUT_S} s; see {_shown(log)}")
        try:
            front.endpoint = json.loads(line)["endpoint"]
        except (ValueError, KeyError, TypeError):
            raise MotoError(f"the DynamoDB front printed {line!r}, not its endpoint; see {_shown(log)}") from None
        return front
    except BaseException:
        front.stop()
        raise
    finally:
        proc.stdout.close()  # it prints nothing after that line


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """The first line `proc` prints on its stdout, or None at its end or after `timeout_s`."""
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace")


@contextlib.contextmanager
def running(**kwargs):
    """`start(**kwargs)` as a context manager: moto is stopped when the block ends."""
    server = start(**kwargs)
    try:
        yield server
    finally:
        server.stop()


def _read_from(log: Path, offset: int) -> str:
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read()[-4000:].decode(errors="replace")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _terminal_sent_it() -> bool:
    """Whether we are in the terminal's foreground process group: then a SIGINT from Ctrl-C
    already reached the command too, and must not be sent to it a second time."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def run(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise MotoError("run: no command given "
                        "(moto.py run [--serial] [--front] [--serial-too] [--front-too] -- CMD ARGS...)")
    child: subprocess.Popen | None = None

    def on_signal(signum, _frame):
        if child is None or child.poll() is not None:
            raise Interrupted(signum)
        # The command decides how to stop; moto is stopped once it has.
        if not (signum == signal.SIGINT and _terminal_sent_it()):
            child.send_signal(signum)

    _handle_signals(on_signal)
    servers: list[MotoServer] = []
    try:
        env = dict(os.environ)
        servers.append(start(serial=args.serial, port=args.port, log=LOGS / "moto-run.log",
                             front=args.front))
        env["MOTO_ENDPOINT"] = servers[-1].endpoint
        if args.serial_too:
            servers.append(start(serial=True, log=LOGS / "moto-run-serial.log"))
            env["MOTO_SERIAL_ENDPOINT"] = servers[-1].endpoint
        if args.front_too:
            servers.append(start(serial=True, log=LOGS / "moto-run-fronted.log", front=True))
            env["MOTO_FRONT_ENDPOINT"] = servers[-1].endpoint
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as err:
            print(f"moto.py: run: cannot start {command[0]}: {err}", file=sys.stderr)
            return 127  # as a shell answers a command it cannot run
        code = child.wait()
        return 128 - code if code < 0 else code
    finally:
        _handle_signals(signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for server in reversed(servers):
            server.stop()


def serve(args) -> int:
    def on_signal(signum, _frame):
        raise Interrupted(signum)

    _handle_signals(on_signal)
    # Appended to: a test run may have several of these at once.
    server = start(serial=args.serial, port=args.port,
                   log=LOGS / f"moto-serve{'-serial' if args.serial else ''}.log", append=True,
                   front=args.front)
    try:
        print(json.dumps({"event": "listening", "endpoint": server.endpoint}, separators=(",", ":")),
              flush=True)
        stdin = sys.stdin.fileno()
        while not _closed(stdin):
            if server.proc.poll() is not None:
                raise MotoError(f"moto exited with {server.proc.returncode} while serving; "
                                f"see {_shown(server.log)}")
            if server.front is not None and server.front.proc.poll() is not None:
                raise MotoError(f"the DynamoDB front exited with {server.front.proc.returncode} "
                                f"while serving; see {_shown(server.front.log)}")
        return 0
    finally:
        _handle_signals(signal.SIG_IGN)
        server.stop()


def _closed(fd: int, wait_s: float = 0.2) -> bool:
    """Whether `fd` is at its end (or gone), waiting up to `wait_s` for something to read."""
    try:
        if select.select([fd], [], [], wait_s)[0]:
            return not os.read(fd, 65536)
    except OSError:
        return True
    return False


def _handle_signals(handler) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    run_parser = modes.add_parser("run", help="run a command with MOTO_ENDPOINT set")
    serve_parser = modes.add_parser("serve", help="print the endpoint, serve until stdin closes")
    for sub in (run_parser, serve_parser):
        sub.add_argument("--serial", action="store_true", help="serve one request at a time")
        sub.add_argument("--port", type=int, help="this port instead of a free one")
        sub.add_argument("--front", action="store_true",
                         help="a DynamoDB front (scripts/dynamo_front.py) before moto; its endpoint instead")
    run_parser.add_argument("--serial-too", action="store_true",
                            help="also a serial moto, exported as MOTO_SERIAL_ENDPOINT")
    run_parser.add_argument("--front-too", action="store_true",
                            help="also a serial moto behind a DynamoDB front, exported as MOTO_FRONT_ENDPOINT")
    run_parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args()
    try:
        return run(args) if args.mode == "run" else serve(args)
    except Interrupted as err:
        return 128 + err.signum
    except MotoError as err:
        print(f"moto.py: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
