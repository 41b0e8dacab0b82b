#!/usr/bin/env python3
"""A DynamoDB front for moto that answers transaction conflicts as real DynamoDB does.

    dynamo_front.py --moto URL [--port N] [--hold-ms N]

moto never reports a transaction conflict; real DynamoDB does, by the rules of the
Developer Guide ("Transaction conflict handling") and the API reference
(TransactionConflictException, TransactionCanceledException):

  1. a PutItem, UpdateItem or DeleteItem of an item that an ongoing TransactWriteItems
     includes fails with TransactionConflictException;
  2. a TransactWriteItems with an item that another ongoing TransactWriteItems includes is
     cancelled: TransactionCanceledException, CancellationReasons one per item in order,
     `TransactionConflict` for the overlapping items, `None` for the others;
  3. a TransactGetItems with an item that an ongoing write (TransactWriteItems, PutItem,
     UpdateItem, DeleteItem, BatchWriteItem) includes is cancelled the same way.
  GetItem, BatchGetItem, Query and Scan never conflict; neither does BatchWriteItem itself.

This server (HTTP/1.1, 127.0.0.1 only) sits in front of moto at URL and forwards every
request to it, one at a time (moto's threaded server is not safe with concurrent
transactions). Requests without an `X-Amz-Target: DynamoDB_20120810.*` header (Secrets
Manager, moto's own /moto-api/) pass through unchanged. For DynamoDB it works out the items
a request touches, as (region, table, canonical key), the keys of a PutItem's or a
transaction Put's `Item` from the table's key schema (one DescribeTable to moto per table,
cached). At arrival, under a lock, it decides by the rules above against the writes in
flight; a refused request never reaches moto. A write that is not refused is in flight from
its arrival until --hold-ms (default 20, or $DYNAMO_FRONT_HOLD_MS) after moto answered it:
the window in which a real transaction holds its items. The answer goes back at once; the
hold runs on after it.

Conflict answers are DynamoDB's own: status 400, `Content-Type: application/x-amz-json-1.0`,
an `x-amzn-RequestId` and an `x-amz-crc32`, and the body
  {"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException",
   "message":"Transaction is ongoing for the item"}
or
  {"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
   "Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
   "CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}

Prints {"event":"listening","endpoint":"http://127.0.0.1:PORT"} on stdout once it accepts
connections (--port 0, the default, picks a free port). Logs one JSON line per conflict it
answers (and per failed forward) on stderr. `GET /__front/stats` answers
{"conflicts": N, "requests": M}: the conflicts answered, and every request it has answered
(conflicts included) except those to /__front/.

Standard library only. Started by scripts/moto.py (`--front`, `--front-too`, `start(front=True)`).
"""

import argparse
import heapq
import http.client
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import urllib.parse
import zlib
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
TARGET_PREFIX = "DynamoDB_20120810."
JSON_1_0 = "application/x-amz-json-1.0"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
ONGOING = "Transaction is ongoing for the item"
DEFAULT_HOLD_MS = 20
DEFAULT_REGION = "us-east-1"
MOTO_TIMEOUT_S = 60

SINGLE_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
WRITES = SINGLE_WRITES + ("BatchWriteItem", "TransactWriteItems")
# Headers that belong to one connection, not to the message (RFC 9110, 7.6.1), and the
# length, which is set again for the body as forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
              "expect", "content-length"}
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/")


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def request_id() -> str:
    """A request id shaped like DynamoDB's: 52 characters, upper-case letters and digits."""
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(52))


# -- the items a request touches ----------------------------------------------------------
Item = tuple  # (region, table, canonical key JSON)


def _attribute(value):
    """An attribute value, with numbers in one canonical form (1, 1.0 and 1E0 are one key)."""
    if isinstance(value, dict) and isinstance(value.get("N"), str):
        try:
            return {"N": str(Decimal(value["N"]).normalize())}
        except InvalidOperation:
            return value
    return value


def item_id(region: str, table_ref: str, key: dict) -> Item:
    """(region, table name, canonical key). A table given by ARN
    (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME) names its own region."""
    table = table_ref
    if table_ref.startswith("arn:"):
        parts = table_ref.split(":", 5)
        if len(parts) == 6 and parts[5].startswith("table/"):
            region, table = parts[3] or region, parts[5][len("table/"):]
    canonical = dumps({name: _attribute(value) for name, value in sorted(key.items())})
    return (region, table, canonical)


def shown(item: Item) -> dict:
    return {"region": item[0], "table": item[1], "key": json.loads(item[2])}


# -- the answers --------------------------------------------------------------------------
def conflict_body() -> dict:
    return {"__type": ERROR_PREFIX + "TransactionConflictException", "message": ONGOING}


def cancelled_body(codes: list) -> dict:
    reasons = [{"Code": "TransactionConflict", "Message": ONGOING} if code else {"Code": "None"}
               for code in codes]
    listed = ", ".join(reason["Code"] for reason in reasons)
    return {
        "__type": ERROR_PREFIX + "TransactionCanceledException",
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{listed}]",
        "CancellationReasons": reasons,
    }


class Hold:
    """One write in flight: its items, and whether it is a TransactWriteItems."""

    __slots__ = ("items", "transaction")

    def __init__(self, items: set, transaction: bool):
        self.items = items
        self.transaction = transaction


class Front:
    """The state shared by the handler threads: writes in flight, key schemas, counters,
    and the one connection to moto."""

    def __init__(self, moto: str, hold_ms: float, log=sys.stderr):
        parsed = urllib.parse.urlsplit(moto)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"--moto must be an http:// URL, not {moto!r}")
        self.moto_host = parsed.hostname
        self.moto_port = parsed.port or 80
        self.hold_s = max(hold_ms, 0) / 1000
        self.log_file = log
        self.state = threading.Lock()  # guards everything below but the connection
        self.in_transactions: dict = {}  # item -> ongoing TransactWriteItems holding it
        self.in_writes: dict = {}  # item -> ongoing writes of any kind holding it
        self.key_schemas: dict = {}  # (region, table) -> [key attribute names]
        self.conflicts = 0
        self.requests = 0
        self.forward_lock = threading.Lock()  # one request at a time to moto
        self.connection: http.client.HTTPConnection | None = None
        self.log_lock = threading.Lock()
        self.releases: list = []  # heap of (due, sequence, Hold)
        self.releases_changed = threading.Condition(self.state)
        self.sequence = 0
        threading.Thread(target=self._release_when_due, name="release", daemon=True).start()

    # -- logging
    def log(self, event: str, **fields) -> None:
        line = dumps({"event": event, "time": round(time.time(), 3), **fields})
        with self.log_lock:
            print(line, file=self.log_file, flush=True)

    # -- moto
    def forward(self, method: str, path: str, headers: list, body: bytes | None):
        """(status, reason, headers, body) of moto's answer, one request at a time. A kept-alive
        connection that moto has closed meanwhile is opened again once, before anything
        was answered on it."""
        with self.forward_lock:
            for attempt in (1, 2):
                reused = self.connection is not None
                if not reused:
                    self.connection = http.client.HTTPConnection(self.moto_host, self.moto_port,
                                                                 timeout=MOTO_TIMEOUT_S)
                connection = self.connection
                try:
                    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                    for name, value in headers:
                        connection.putheader(name, value)
                    if body is not None:
                        connection.putheader("Content-Length", str(len(body)))
                    connection.endheaders(body)
                    response = connection.getresponse()
                    data = response.read()
                    answer = (response.status, response.reason, response.getheaders(), data)
                    if response.will_close:
                        connection.close()
                        self.connection = None
                    return answer
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    connection.close()
                    self.connection = None
                    if not reused or attempt == 2:
                        raise
                except BaseException:
                    connection.close()
                    self.connection = None
                    raise
        raise AssertionError("unreachable")

    def key_schema(self, region: str, table_ref: str, headers: dict) -> list | None:
        """The key attribute names of a table, asked of moto once (DescribeTable) and cached;
        None when moto does not know the table (the request then fails there, as it should)."""
        region_of_table, table, _ = item_id(region, table_ref, {})
        with self.state:
            known = self.key_schemas.get((region_of_table, table))
        if known is not None:
            return known
        access_key = "testing"
        match = CREDENTIAL.search(headers.get("authorization", ""))
        if match:
            access_key = match.group(1)
        body = dumps({"TableName": table_ref}).encode()
        probe = [
            ("Host", f"{self.moto_host}:{self.moto_port}"),
            ("Content-Type", JSON_1_0),
            ("X-Amz-Target", TARGET_PREFIX + "DescribeTable"),
            ("X-Amz-Date", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())),
            # moto takes the region (and the account) from the credential scope; it checks
            # no signature.
            ("Authorization", f"AWS4-HMAC-SHA256 Credential={access_key}/{time.strftime('%Y%m%d', time.gmtime())}"
                              f"/{region_of_table}/dynamodb/aws4_request, SignedHeaders=host, Signature=0"),
        ]
        try:
            status, _, _, data = self.forward("POST", "/", probe, body)
        except (OSError, http.client.HTTPException) as err:
            self.log("describe-table-failed", table=table, region=region_of_table, error=str(err))
            return None
        if status != 200:
            return None
        try:
            names = [k["AttributeName"] for k in json.loads(data)["Table"]["KeySchema"]]
        except (ValueError, KeyError, TypeError):
            return None
        with self.state:
            self.key_schemas[(region_of_table, table)] = names
        return names

    def forget_table(self, region: str, table_ref) -> None:
        if isinstance(table_ref, str):
            region_of_table, table, _ = item_id(region, table_ref, {})
            with self.state:
                self.key_schemas.pop((region_of_table, table), None)

    # -- the items of a request
    def items_of(self, operation: str, payload: dict, region: str, headers: dict) -> list:
        """The items `operation` touches, in request order; None for an entry whose item
        cannot be told (it then conflicts with nothing)."""

        def keyed(table_ref, key):
            if isinstance(table_ref, str) and isinstance(key, dict) and key:
                return item_id(region, table_ref, key)
            return None

        def put(table_ref, item):
            if not (isinstance(table_ref, str) and isinstance(item, dict)):
                return None
            names = self.key_schema(region, table_ref, headers)
            if not names or any(name not in item for name in names):
                return None
            return keyed(table_ref, {name: item[name] for name in names})

        if operation == "PutItem":
            return [put(payload.get("TableName"), payload.get("Item"))]
        if operation in ("UpdateItem", "DeleteItem", "GetItem"):
            return [keyed(payload.get("TableName"), payload.get("Key"))]
        if operation == "TransactWriteItems":
            items = []
            for entry in payload.get("TransactItems") or []:
                entry = entry if isinstance(entry, dict) else {}
                if isinstance(entry.get("Put"), dict):
                    items.append(put(entry["Put"].get("TableName"), entry["Put"].get("Item")))
                    continue
                action = next((entry[name] for name in ("Update", "Delete", "ConditionCheck")
                               if isinstance(entry.get(name), dict)), {})
                items.append(keyed(action.get("TableName"), action.get("Key")))
            return items
        if operation == "TransactGetItems":
            items = []
            for entry in payload.get("TransactItems") or []:
                get = entry.get("Get") if isinstance(entry, dict) else None
                get = get if isinstance(get, dict) else {}
                items.append(keyed(get.get("TableName"), get.get("Key")))
            return items
        if operation == "BatchWriteItem":
            items = []
            requests = payload.get("RequestItems")
            for table_ref, writes in (requests.items() if isinstance(requests, dict) else []):
                for write in writes if isinstance(writes, list) else []:
                    write = write if isinstance(write, dict) else {}
                    if isinstance(write.get("PutRequest"), dict):
                        items.append(put(table_ref, write["PutRequest"].get("Item")))
                    elif isinstance(write.get("DeleteRequest"), dict):
                        items.append(keyed(table_ref, write["DeleteRequest"].get("Key")))
            return items
        return []  # BatchGetItem, Query, Scan, ...: never conflict, never hold

    # -- the rules
    def arrive(self, operation: str, items: list):
        """Decides at arrival, under the lock, against the writes in flight. Returns
        (refusal body or None, Hold or None): a write that is not refused is registered."""
        with self.state:
            self.requests += 1
            refusal = None
            if operation in SINGLE_WRITES:
                if any(item in self.in_transactions for item in items if item):
                    refusal = conflict_body()
            elif operation in ("TransactWriteItems", "TransactGetItems"):
                held = self.in_transactions if operation == "TransactWriteItems" else self.in_writes
                codes = [bool(item) and item in held for item in items]
                if any(codes):
                    refusal = cancelled_body(codes)
            if refusal is not None:
                self.conflicts += 1
                return refusal, None
            if operation not in WRITES:
                return None, None
            hold = Hold({item for item in items if item}, operation == "TransactWriteItems")
            for item in hold.items:
                self.in_writes[item] = self.in_writes.get(item, 0) + 1
                if hold.transaction:
                    self.in_transactions[item] = self.in_transactions.get(item, 0) + 1
            return None, hold

    def release_later(self, hold: Hold) -> None:
        """Ends `hold` once the hold time has passed (now: moto has answered)."""
        with self.state:
            if self.hold_s <= 0:
                self._release(hold)
                return
            self.sequence += 1
            heapq.heappush(self.releases, (time.monotonic() + self.hold_s, self.sequence, hold))
            self.releases_changed.notify()

    def _release(self, hold: Hold) -> None:  # with self.state held
        for item in hold.items:
            for held in ((self.in_writes, self.in_transactions) if hold.transaction else (self.in_writes,)):
                held[item] -= 1
                if not held[item]:
                    del held[item]

    def _release_when_due(self) -> None:
        with self.state:
            while True:
                if not self.releases:
                    self.releases_changed.wait()
                    continue
                due = self.releases[0][0] - time.monotonic()
                if due > 0:
                    self.releases_changed.wait(due)
                    continue
                self._release(heapq.heappop(self.releases)[2])

    def count(self) -> None:
        """Counts a request that is not DynamoDB's (arrive() counts those)."""
        with self.state:
            self.requests += 1

    def stats(self) -> dict:
        with self.state:
            return {"conflicts": self.conflicts, "requests": self.requests}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK would add 40 ms to every answer.
    disable_nagle_algorithm = True
    front: Front  # set on the class by main()

    def version_string(self) -> str:
        return "dynamo-front"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # one line per conflict, not per request

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _answer(self, status: int, headers: list, body: bytes, reason: str | None = None) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, value: dict, headers: list = ()) -> None:
        body = dumps(value).encode()
        self._answer(status, [*headers, ("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))], body)

    def _handle(self) -> None:
        front = self.front
        if self.path.split("?", 1)[0] == "/__front/stats":
            self._body()  # read whatever came, to keep the connection usable
            self._json(200, front.stats(), [("Content-Type", "application/json")])
            return
        body = self._body()
        headers = [(name, value) for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP]
        target = self.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        hold = None
        if operation is None:
            front.count()
        else:
            lower = {name.lower(): value for name, value in headers}
            match = CREDENTIAL.search(lower.get("authorization", ""))
            region = match.group(2) if match else DEFAULT_REGION
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = None
            items = front.items_of(operation, payload, region, lower) if isinstance(payload, dict) else []
            refusal, hold = front.arrive(operation, items)
            if refusal is not None:
                rid = request_id()
                front.log("conflict", operation=operation, error=refusal["__type"].split("#", 1)[1],
                          reasons=[r["Code"] for r in refusal.get("CancellationReasons", [])],
                          items=[shown(item) if item else None for item in items], request_id=rid)
                self._json(400, refusal, [("x-amzn-RequestId", rid), ("Content-Type", JSON_1_0)])
                return
        try:
            status, reason, answer_headers, answer = front.forward(self.command, self.path, headers, body)
        except (OSError, http.client.HTTPException) as err:
            front.log("forward-failed", operation=operation, path=self.path, error=repr(err))
            self._answer(502, [("Content-Type", "text/plain")], f"dynamo_front: moto did not answer: {err}\n".encode())
            return
        finally:
            if hold is not None:
                front.release_later(hold)
        if operation in ("CreateTable", "DeleteTable") and isinstance(payload, dict):
            front.forget_table(region, payload.get("TableName"))
        self._answer(status, answer_headers, answer, reason)

    def _serve(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moto", required=True, help="moto's endpoint, http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one)")
    parser.add_argument("--hold-ms", type=float, default=None,
                        help=f"how long a write stays in flight after moto answered it "
                             f"(default $DYNAMO_FRONT_HOLD_MS, else {DEFAULT_HOLD_MS})")
    args = parser.parse_args()
    hold_ms = args.hold_ms
    if hold_ms is None:
        hold_ms = float(os.environ.get("DYNAMO_FRONT_HOLD_MS") or DEFAULT_HOLD_MS)
    try:
        front = Front(args.moto, hold_ms)
        Handler.front = front
        server = Server((HOST, args.port), Handler)
    except (ValueError, OSError) as err:
        print(f"dynamo_front.py: {err}", file=sys.stderr)
        return 1
    endpoint = f"http://{HOST}:{server.server_address[1]}"
    front.log("listening", endpoint=endpoint, moto=args.moto, hold_ms=hold_ms)
    print(dumps({"event": "listening", "endpoint": endpoint}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
