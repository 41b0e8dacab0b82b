#!/usr/bin/env python3
"""A keep-alive relay in front of a local HTTP service that closes every connection.

moto's server (werkzeug) answers every request with `Connection: close`, so a client
talking to it opens a new TCP connection for every call. DynamoDB and Secrets Manager keep
their connections alive: a function measured against moto alone would be charged a connect
and a close per call that it never pays on Lambda. The relay accepts HTTP/1.1 keep-alive
connections on 127.0.0.1 and passes each request on to the service on a connection of its
own, as they come (overlapping ones overlap: the cold start reads both secrets at once);
the client's connection stays open, as with the real endpoint.

Used by make bench (scripts/bench.py).
"""

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Hop-by-hop headers (RFC 9110, 7.6.1) and the length, which the relay sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
              "upgrade", "content-length"}
# SO_LINGER on, 0 s: close() resets the connection, so no TIME_WAIT is left on either side
# (a new connection every request from the same few thousand ports would sooner or later
# meet one: a SYN answered late, a 1 s stall).
NO_LINGER = struct.pack("ii", 1, 0)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a client opening several connections at once
    # (the SDK's parallel counter updates) could see a SYN dropped and sent again 1 s later.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a client that went away (the function's process ended) is not an error


class KeepAliveRelay:
    """Listens on 127.0.0.1 (a free port); `url` is its base URL. `stop()` ends it."""

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the relay only fronts a loopback http:// service, not {upstream}")
        host, port = target.hostname, target.port or 80

        def forward(method: str, path: str, body: bytes | None, headers: dict):
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.reason, answer.getheaders(), answer.read()
            finally:
                if conn.sock is not None:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, NO_LINGER)
                conn.close()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, reason, answer_headers, payload = forward(self.command, self.path, body, headers)
                # The status line, the headers and the body in one write, as a server in
                # front of DynamoDB sends a small answer: two would wake the client twice.
                head = [f"HTTP/1.1 {status} {reason}",
                        *(f"{name}: {value}" for name, value in answer_headers if name.lower() not in HOP_BY_HOP),
                        f"Content-Length: {len(payload)}"]
                body = payload if self.command != "HEAD" else b""
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = relay

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
