"""The body arms: JSON bodies moved between versions inside Envoy, against the same bodies
proxied with no body work and against Envoy's own transform filter (bench/body.json).

  P   plain: the router alone; the client's body (the shape of 3) and the upstream's (4) pass
  T   transform: Envoy's `envoy.filters.http.transform` doing the nearest equivalent of the one
      step 3 → 4, a rename of a top-level member both ways: its MERGE can add the new member
      with the old one's value, not remove the old one
  H0  meshver's header filter alone (the body filter left out of what `meshver render envoy`
      writes), a client of 4: what the header filter costs with these bodies
  H   meshver, no body work: meshver's two filters as `meshver render envoy` writes them for
      the body catalog, a client of 4 (deployed: no plan, no mark, so the `composite` filter
      never creates the body filter); against H0, what the body filter costs a request it skips
  M1  meshver, one step: a client of 3 (3 → 4 on the way in, 4 → 3 on the way out)
  M3  meshver, three steps: a client of 1 (1 → 2 → 3 → 4, and back)

Every arm's client sends `POST /orders/<size>` with its version in `x-api-version` and its
body; the upstream (an Envoy: the buffer filter reads the whole body, then direct_response)
answers the shape of 4 of that size. Before any timing, each arm's answers are checked against
an upstream in this process that keeps what it received (bodies are compared byte for byte
where meshver writes them: compact JSON, members in key order).
"""

import copy
import json
import sys
import threading
from http.server import ThreadingHTTPServer

from . import catalog, mix
from .arms import admin, hcm, listener, url_of
from .env import BODY_SPEC, ENVOY_CPU, ROOT, harness, log, start_envoy
from .measure import BURSTS

sys.path.insert(0, str(ROOT / "examples/services"))
import service  # noqa: E402  (the example upstream: its handler reads bodies, chunked or not)

BODY_ARMS = ["P", "T", "H0", "H", "M1", "M3"]
BODY_ARM_NAMES = {"P": "plain", "T": "transform", "H0": "meshver header filter alone",
                  "H": "meshver, no body work", "M1": "meshver, 1 step", "M3": "meshver, 3 steps"}
# The name `meshver render envoy` gives the body filter's entry in http_filters.
BODY_FILTER_NAME = "meshver-body"
HOST = "bench.local"


def compact(value):
    """JSON as meshver writes a rewritten body: compact, members in key order."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def order(shape, count):
    """One order in a shape of bench/body.json: its head's members and `count` items."""
    return {**shape["head"], "items": [{**shape["item"], "id": i} for i in range(count)]}


class Spec:
    """bench/body.json: the catalog, the bodies of each size in each shape, and what each arm's
    client speaks."""

    def __init__(self, path=BODY_SPEC):
        self.data = json.loads(path.read_text())
        self.sizes = [s["name"] for s in self.data["sizes"]]
        self.upstream_version = self.data["upstream_version"]
        steps = {c["steps"]: c["version"] for c in self.data["clients"]}
        self.client_version = {"P": steps[1], "T": steps[1], "H0": self.upstream_version,
                               "H": self.upstream_version, "M1": steps[1], "M3": steps[3]}
        count = {s["name"]: s["count"] for s in self.data["sizes"]}
        self.bodies = {(version, size): compact(order(self.data["shapes"][version], count[size]))
                       for version in {*self.client_version.values()} for size in self.sizes}

    def path(self, size):
        return f"{self.data['path']}/{size}"

    def body(self, version, size):
        return self.bodies[(version, size)]

    def client_body(self, arm, size):
        return self.body(self.client_version[arm], size)

    def upstream_body(self, size):
        return self.body(self.upstream_version, size)

    def bytes_per_request(self, arm, size):
        """The body bytes an arm's Envoy carries per request: the client's and the upstream's."""
        return len(self.client_body(arm, size)) + len(self.upstream_body(size))

    def request_headers(self, arm):
        return [("host", HOST), ("user-agent", "meshver-bench"), ("content-type", "application/json"),
                ("x-api-version", self.client_version[arm])]

    def renamed_member(self):
        """(old, new) of the one step's request rename, a top-level member: what arm T copies."""
        one_step = self.client_version["M1"]
        change = next(c for c in self.data["catalog"]["services"][0]["data"]["changes"] if c["from"] == one_step)
        op = change["request"][0]
        assert op["op"] == "rename" and op["from"].count("/") == 1 == op["to"].count("/"), op
        return op["from"][1:], op["to"][1:]


def transform_filter(old, new):
    """Envoy's transform filter copying `old` to `new` in the request body and back in the
    response body (MERGE: the members of the formatted object are added to the body)."""
    def merge(member, command):
        return {"body_transformation": {"action": "MERGE", "body_format": {"json_format": {member: command}}}}
    return {"name": "envoy.filters.http.transform", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.transform.v3.TransformConfig",
        "request_transformation": merge(new, f"%REQUEST_BODY({old})%"),
        "response_transformation": merge(old, f"%RESPONSE_BODY({new})%")}}


def upstream_config(admin_port, port, spec):
    """The upstream: one listener that reads each request body whole (the buffer filter) and
    answers the shape of the upstream's version for the size in the path."""
    routes = [{"match": {"path": spec.path(size)}, "direct_response": {
        "status": 200, "body": {"inline_string": spec.upstream_body(size).decode()}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]} for size in spec.sizes]
    largest = max(len(spec.upstream_body(size)) for size in spec.sizes)
    rc = {"name": "upstream", "max_direct_response_body_size_bytes": largest,
          "virtual_hosts": [{"name": "upstream", "domains": ["*"], "routes": routes}]}
    buffer = {"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 4 * largest}}
    return {"admin": admin(admin_port),
            "static_resources": {"listeners": [listener("upstream", port, hcm("upstream", rc, [buffer]))]}}


class BodyArms:
    """The front Envoy config of each body arm, in front of an upstream on `upstream_port`.

    Arms H, M1 and M3 run what `meshver render envoy` writes for the body catalog; H0 the same
    without the body filter; P and T the same bootstrap with meshver's filters and routes
    replaced (the router alone, or the transform filter and the router, routing every request
    to the upstream), so that every other setting (buffer limits, stats flush, runtime) is the
    same in every arm."""

    def __init__(self, spec, wasm, body_wasm, work):
        self.spec, self.wasm, self.body_wasm = spec, wasm, body_wasm
        self.catalog_path = work / "body-catalog.json"
        self.catalog_path.write_text(json.dumps(spec.data["catalog"]))
        compiled = catalog.compiled_catalog(self.catalog_path)
        self.route_key = compiled["services"][0]["deployments"][0]["route"]

    def fronts(self, upstream_port):
        return {arm: self.front(arm, upstream_port) for arm in BODY_ARMS}

    def front(self, arm, upstream_port):
        bootstrap = catalog.rendered_bootstrap({self.route_key: upstream_port}, self.wasm, self.catalog_path,
                                               harness.free_port(), harness.free_port(), self.body_wasm)
        if arm in ("H", "M1", "M3"):
            return bootstrap
        manager = catalog.hcm_of(bootstrap)
        if arm == "H0":
            kept = [f for f in manager["http_filters"] if f["name"] != BODY_FILTER_NAME]
            if len(kept) == len(manager["http_filters"]):
                sys.exit(f"`meshver render envoy` wrote no filter named {BODY_FILTER_NAME} for the body catalog")
            manager["http_filters"] = kept
            return bootstrap
        router = manager["http_filters"][-1]
        filters = [transform_filter(*self.spec.renamed_member())] if arm == "T" else []
        manager["http_filters"] = filters + [copy.deepcopy(router)]
        vhost = manager["route_config"]["virtual_hosts"][0]
        vhost["routes"] = [{"match": {"prefix": self.spec.data["path"]},
                            "route": {"cluster": self.route_key, "timeout": "5s"}}]
        return bootstrap


# ---------------------------------------------------------------- the answer check

class CheckUpstream:
    """The upstream of the answer check, in this process: answers every request with the
    upstream's body for its path, and keeps the headers and body it received."""

    def __init__(self, spec):
        self.received = None
        outer = self

        class Handler(service.Handler):
            def handle_any(self):
                body = self.read_body()
                outer.received = (self.received_headers(), body)
                answer = spec.upstream_body(self.path.rsplit("/", 1)[-1])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def expected(spec, arm, size):
    """(what the upstream must receive, what the client must get, the version header the
    upstream must see). Bytes where they must be exact; a JSON value where Envoy's transform
    filter writes the body (its member order and number format are its own)."""
    client, upstream = spec.client_body(arm, size), spec.upstream_body(size)
    version = spec.client_version[arm]
    if arm in ("P", "H0", "H"):
        return client, upstream, version
    if arm == "T":
        old, new = spec.renamed_member()
        sent, answered = json.loads(client), json.loads(upstream)
        return {**sent, new: sent[old]}, {**answered, old: answered[new]}, version
    return upstream, client, spec.upstream_version


def check_answers(spec, arms_of):
    """Every body arm, alone, with each body size: the upstream receives its own shape, the
    client gets its own. Returns a list of mismatches; arms_of(upstream_port) -> {arm: config}."""
    upstream = CheckUpstream(spec)
    problems = []
    try:
        configs = arms_of(upstream.port)
        for arm in BODY_ARMS:
            front = start_envoy(f"check-body-{arm}", configs[arm], ENVOY_CPU)
            try:
                for size in spec.sizes:
                    upstream.received = None
                    answer = harness.http1("POST", url_of(configs[arm]) + spec.path(size),
                                           headers=spec.request_headers(arm), body=spec.client_body(arm, size))
                    want_sent, want_answer, want_version = expected(spec, arm, size)
                    problems += _mismatches(f"body arm {arm}, {size}", answer, upstream.received,
                                            want_sent, want_answer, want_version)
                problems += [f"body arm {arm}: {line}" for line in front.critical_lines()[:5]]
            finally:
                front.stop()
            log(f"check body arm {arm} ({BODY_ARM_NAMES[arm]}): "
                f"{'ok' if not any(p.startswith(f'body arm {arm}') for p in problems) else 'WRONG'} "
                f"({len(spec.sizes)} sizes)")
    finally:
        upstream.stop()
    return problems


def _mismatches(where, answer, received, want_sent, want_answer, want_version):
    if answer.status != 200:
        return [f"{where}: status {answer.status}: {answer.body[:200]!r}"]
    if received is None:
        return [f"{where}: the upstream received nothing"]
    headers, sent = received
    problems = []
    if headers.get("x-api-version") != want_version:
        problems.append(f"{where}: the upstream saw version {headers.get('x-api-version')}, want {want_version}")
    for what, got, want in (("the upstream received", sent, want_sent), ("the client got", answer.body, want_answer)):
        if isinstance(want, bytes) and got != want:
            problems.append(f"{what} {len(got)} bytes unlike the {len(want)} expected: {got[:120]!r}")
        elif not isinstance(want, bytes) and json.loads(got) != want:
            problems.append(f"{what} another JSON value than expected: {got[:120]!r}")
    return [p if p.startswith(where) else f"{where}: {p}" for p in problems]


# ---------------------------------------------------------------- the load generators' inputs

def write_scripts(spec, work, counts):
    """Per size and arm, the wrk scripts (unbounded for the warm-up, and stopping after one
    burst of the CPU step) sending that arm's request with its body; counts: size -> requests
    per arm and round."""
    scripts = {}
    for size in spec.sizes:
        scripts[size] = {}
        for arm in BODY_ARMS:
            body_file = work / f"body-{arm}-{size}.json"
            body_file.write_bytes(spec.client_body(arm, size))
            req = [(None, "POST", spec.path(size), spec.request_headers(arm))]
            paths = {"wrk": work / f"body-{arm}-{size}.lua", "wrk_burst": work / f"body-{arm}-{size}-burst.lua"}
            paths["wrk"].write_text(mix.wrk_script(req, body_file=body_file))
            paths["wrk_burst"].write_text(mix.wrk_script(req, stop_after=max(1, counts[size] // BURSTS),
                                                         body_file=body_file))
            scripts[size][arm] = paths
    return scripts
