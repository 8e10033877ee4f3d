#!/usr/bin/env python3
"""One upstream deployment of an example service (user or order), stdlib only.

Every answer is JSON that echoes what the upstream received (method, exact
request target, headers, body), so end-to-end tests can assert on what the
filter routed and rewrote.

    python3 examples/services/service.py --service user --version 2.1.0 --port 18003
"""

import argparse
import hashlib
import json
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (method, path without query) -> handler name, per service.
ENDPOINTS = {
    "user": {("POST", "/register"): "register", ("POST", "/login"): "login"},
    "order": {("POST", "/order"): "order"},
}

# The account a user register or login body names, as each major line of the user API shapes
# it (the demo's change 1 -> 2 moves between the two): the name an answer gives each field,
# and where in the request body it is read. Other lines answer no account.
ACCOUNT_SHAPES = {
    "1": {"name": ("name",), "email": ("email",)},
    "2": {"full_name": ("full_name",), "email": ("credentials", "email")},
}


class Faults:
    """Failure rate and delay, changeable at runtime through POST /__fault."""

    def __init__(self, fail_rate, delay_ms):
        self.lock = threading.Lock()
        self.fail_rate = fail_rate
        self.delay_ms = delay_ms

    def update(self, query):
        params = urllib.parse.parse_qs(query)
        with self.lock:
            if "fail_rate" in params:
                self.fail_rate = min(1.0, max(0.0, float(params["fail_rate"][0])))
            if "delay_ms" in params:
                self.delay_ms = max(0, int(params["delay_ms"][0]))
            return self.snapshot()

    def snapshot(self):
        return {"fail_rate": self.fail_rate, "delay_ms": self.delay_ms}


class Tally:
    """Requests received, by kind and method, for GET /__requests: "mirrored" are the copies a
    proxy sends while shadowing (Envoy appends -shadow to their Host), "served" all others."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"served": {}, "mirrored": {}}

    def add(self, host, method):
        name = host.rpartition(":")[0] or host  # Envoy puts the suffix before any port
        kind = "mirrored" if name.endswith("-shadow") else "served"
        with self.lock:
            self.counts[kind][method] = self.counts[kind].get(method, 0) + 1

    def snapshot(self):
        with self.lock:
            return {kind: dict(by_method) for kind, by_method in self.counts.items()}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, so every answer carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    # Set on the subclass built in main().
    service = version = user_url = faults = tally = verbose = None

    def log_message(self, fmt, *args):
        if self.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def handle_any(self):
        # Read the body (by Content-Length, or chunked) even for 404s, or keep-alive desyncs.
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            # A body cut short (the proxy gave up on the request): nothing to answer.
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        echo = {
            "service": self.service,
            "version": self.version,
            "method": self.command,
            "path": self.path,
            "headers": self.received_headers(),
            "body": raw.decode("utf-8", errors="replace"),
            # The exact bytes, which "body" cannot show for a body that is not UTF-8.
            "body_sha256": hashlib.sha256(raw).hexdigest(),
        }

        # Control endpoints are never faulted, so tests can always reach them.
        if path == "/healthz":
            return self.reply(200, {"ok": True, **echo})
        if path == "/__fault" and self.command == "POST":
            try:
                return self.reply(200, {"ok": True, **self.faults.update(query)})
            except ValueError as err:
                return self.reply(400, {"ok": False, "error": str(err)})
        if path == "/__requests" and self.command == "GET":
            return self.reply(200, self.tally.snapshot())

        self.tally.add(self.headers.get("Host") or "", self.command)
        settings = self.faults.snapshot()
        if settings["delay_ms"]:
            time.sleep(settings["delay_ms"] / 1000)
        if random.random() < settings["fail_rate"]:
            return self.reply(503, {**echo, "error": "injected failure"})

        name = ENDPOINTS[self.service].get((self.command, path))
        if name is None:
            return self.reply(404, {**echo, "error": "not found"})
        status, extra = getattr(self, "ep_" + name)(raw)
        self.reply(status, {**echo, **extra})

    def read_body(self):
        """The request body as received; ValueError or OSError when it is cut short."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(1 << 16)
                if not line.endswith(b"\n"):
                    raise ValueError("request body cut short")
                size = int(line.split(b";")[0].strip(), 16)  # ValueError if not a chunk size
                if size == 0:
                    break
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise ValueError("request body cut short")
                chunks.append(chunk)
            # Trailers, up to the empty line that ends the message.
            while (line := self.rfile.readline(1 << 16)) not in (b"\r\n", b"\n"):
                if not line.endswith(b"\n"):
                    raise ValueError("request trailers cut short")
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) != length:
            raise ValueError("request body cut short")
        return raw

    def received_headers(self):
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    def account(self, raw):
        """{"account": ...} read from the body in this deployment's line's shape (ACCOUNT_SHAPES),
        or {} when the line has none, the body is not a JSON object, or it names no field."""
        shape = ACCOUNT_SHAPES.get(self.version.split(".")[0])
        try:
            body = json.loads(raw) if shape else None
        except (ValueError, RecursionError):
            return {}
        account = {}
        for field, path in (shape or {}).items():
            value = body
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                account[field] = value
        return {"account": account} if account else {}

    def ep_register(self, raw):
        return 200, {"result": {"registered": True, **self.account(raw)}}

    def ep_login(self, raw):
        token = f"token-{self.version}-{random.randrange(1 << 32):08x}"
        return 200, {"result": {"token": token, **self.account(raw)}}

    def ep_order(self, _raw):
        result = {"result": {"order_id": f"ord-{random.randrange(1 << 32):08x}"}}
        if not self.user_url:
            return 200, result
        # Check the user through whatever URL we were given (normally the mesh).
        # Only x-user-id is forwarded: no API version is chosen here, so which
        # user version answers is left to the mesh.
        headers = {"Content-Type": "application/json"}
        if self.headers.get("x-user-id"):
            headers["x-user-id"] = self.headers["x-user-id"]
        request = urllib.request.Request(
            self.user_url.rstrip("/") + "/login", data=b"{}", headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return 200, {**result, "user_check": json.loads(response.read())}
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", errors="replace")
            return 502, {"error": "user check failed", "user_check": {"status": err.code, "body": text}}
        except (urllib.error.URLError, OSError) as err:
            return 502, {"error": "user check failed", "user_check": {"status": None, "body": str(err)}}

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True, choices=sorted(ENDPOINTS))
    parser.add_argument("--version", required=True, help="this deployment's semver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user-url", help="base URL of the user service (order only)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 503")
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    handler = type("ServiceHandler", (Handler,), {
        "service": args.service,
        "version": args.version,
        "user_url": args.user_url,
        "faults": Faults(args.fail_rate, args.delay_ms),
        "tally": Tally(),
        "verbose": args.verbose,
    })
    # A longer accept backlog than the default 5, for load and canary tests.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True  # open keep-alive connections must not block exit

    # Exit straight away on a signal: serve_forever is blocking this thread, and
    # request threads are daemons, so there is nothing to wind down.
    def stop(_signum, _frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{args.service} {args.version} listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
