#!/usr/bin/env python3
"""`make bench`: meshver against native Envoy routing and a Lua filter doing the same work.

Four arms behind the same Envoy binary, in front of the same upstream (a second Envoy
answering with `direct_response`, one listener per deployment, that names itself and
echoes the path and version it saw):

  A   native: route config alone (regex header/path/query matches, regex_rewrite,
      header_mutation for the query parameter, direct_response for rejects)
  B   lua: envoy.filters.http.lua running bench/lua/meshver.lua on the demo catalog
  C   meshver: target/wasm32-wasip1/release/meshver.wasm on V8, the demo catalog
  C0  empty wasm: arm A's routes behind a proxy-wasm filter that does nothing

Each arm's answers to every kind of request in bench/mix.json are checked first (status,
deployment reached, path and version header it saw, lifecycle headers, problem+json);
then, in rounds with the arms interleaved, the front Envoy (one worker, pinned to CPU 0;
load generator and upstream on CPU 1) is measured for CPU per request over a fixed
number of requests, throughput at saturation, latency at a fixed open-loop rate, and RSS.
Results: bench/results/latest.json, and the table between the markers in BENCHMARKS.md.
"""

import argparse
import datetime
import email.utils
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import envoy_binary, free_port, http1  # noqa: E402  (the tests' own helpers)

CATALOG_PATH = ROOT / "examples/catalog.json"
MIX_PATH = ROOT / "bench/mix.json"
LUA_PATH = ROOT / "bench/lua/meshver.lua"
MESHVER_WASM = ROOT / "target/wasm32-wasip1/release/meshver.wasm"
EMPTY_WASM = ROOT / "target/wasm32-wasip1/release/meshver_bench_empty_filter.wasm"
OPENLOOP = ROOT / "target/release/openloop"
MESHVER_CLI = ROOT / "target/release/meshver"
RESULTS = ROOT / "bench/results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
ARMS = ["A", "B", "C0", "C"]
ARM_NAMES = {"A": "native", "B": "lua", "C0": "empty wasm", "C": "meshver"}
ENVOY_CPU, LOADGEN_CPU = "0", "1"
# The fixed-count CPU run of each round is sent in this many bursts, alternating between arms.
BURSTS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

_children = []


def log(*parts):
    print(*parts, flush=True)


# ---------------------------------------------------------------- catalog-derived facts

def http_date(day):
    at = datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
    return email.utils.format_datetime(at, usegmt=True), int(at.timestamp())


def catalog_facts(catalog):
    """Deployments, route keys, weights and lifecycle headers, as meshver derives them."""
    services = []
    for s in catalog["services"]:
        deps = sorted(s["deployments"], key=lambda d: tuple(int(x) for x in d["version"].split(".")))
        majors = sorted({int(d["version"].split(".")[0]) for d in deps})
        lines = {}
        for major in majors:
            members = [d for d in deps if int(d["version"].split(".")[0]) == major]
            lifecycle = {}
            lc = s.get("lines", {}).get(str(major), {}).get("lifecycle")
            if lc:
                if lc.get("deprecated"):
                    lifecycle["deprecation"] = f"@{http_date(lc['deprecated'])[1]}"
                if lc.get("sunset"):
                    lifecycle["sunset"] = http_date(lc["sunset"])[0]
                if lc.get("link"):
                    lifecycle["link"] = f"<{lc['link']}>; rel=\"successor-version\""
            lines[major] = {"route": f"{s['name']}-v{major}", "lifecycle": lifecycle,
                            # Newest first, as the CLI renders them (sticky rollouts).
                            "clusters": [(f"{s['name']}-{d['version']}", d.get("weight", 100))
                                         for d in reversed(members)]}
        services.append({"name": s["name"], "prefixes": s["match"]["path_prefixes"],
                         "default": s["default_version"],
                         "sources": s.get("sources", ["header", "path", "suffix", "accept", "query", "grpc"]),
                         "version_header": s.get("version_header", "x-api-version"),
                         "query_param": s.get("query_param", "api-version"),
                         "accept_vendor": s.get("accept_vendor"),
                         "deployments": [f"{s['name']}-{d['version']}" for d in deps],
                         "versions": [d["version"] for d in deps], "lines": lines})
    return services


def lifecycle_of(services):
    """Route key (line or deployment) -> lifecycle response headers."""
    out = {}
    for s in services:
        for major, line in s["lines"].items():
            if line["lifecycle"]:
                out[line["route"]] = line["lifecycle"]
                for d in s["deployments"]:
                    if d.split("-")[-1].split(".")[0] == str(major):
                        out[d] = line["lifecycle"]
    return out


# ---------------------------------------------------------------- Envoy configs

def hcm(stat_prefix, route_config, http_filters):
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix, "codec_type": "AUTO", "route_config": route_config,
        "http_filters": http_filters + [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}


def listener(name, port, filters):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [filters]}]}


def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def upstream_config(admin_port, ports):
    """One listener per deployment; each answers 200 with a small JSON body, its own name,
    and the path and x-api-version it received."""
    listeners = []
    for name, port in ports.items():
        route = {"match": {"prefix": "/"}, "direct_response": {
            "status": 200, "body": {"inline_string": json.dumps({"deployment": name, "ok": True})}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/json"},
                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-upstream", "value": name}},
                {"header": {"key": "x-seen-path", "value": "%REQ(:PATH)%"}},
                {"header": {"key": "x-seen-version", "value": "%REQ(X-API-VERSION)%"}}]}
        rc = {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}]}
        listeners.append(listener(name, port, hcm(name.replace(".", "_"), rc, [])))
    return {"admin": admin(admin_port), "static_resources": {"listeners": listeners}}


def clusters(ports):
    return [{"name": name, "type": "STATIC", "connect_timeout": "1s",
             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                 "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
            for name, port in ports.items()]


def set_header(key, value):
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def route_action(services, key):
    """Where a route key goes: a line (weighted, sticky header, runtime weights) or one cluster."""
    for s in services:
        for line in s["lines"].values():
            if line["route"] == key:
                return {"timeout": "5s", "weighted_clusters": {
                    "clusters": [{"name": c, "weight": w} for c, w in line["clusters"]],
                    "header_name": "x-meshver-sticky", "runtime_key_prefix": f"routing.{key}"}}
    return {"timeout": "5s", "cluster": key}


def lifecycle_response_headers(lifecycles, key):
    return [set_header(name, value) for name, value in lifecycles.get(key, {}).items()]


def rendered_routes(upstream_ports):
    """Arms B and C: the route config `meshver render envoy` writes for the catalog (the filter
    names the route in x-meshver-route; a deprecated deployment's route and weighted cluster
    add its lifecycle headers), taken from a bootstrap rendered for these upstreams."""
    work = Path(tempfile.mkdtemp(prefix="meshver-bench-render-"))
    try:
        mesh = {"admin": "127.0.0.1:9901", "wasm": str(MESHVER_WASM),
                "endpoints": {name: f"127.0.0.1:{port}" for name, port in upstream_ports.items()},
                "listeners": [{"name": "bench", "address": "127.0.0.1:10000", "catalog": str(CATALOG_PATH)}]}
        (work / "mesh.json").write_text(json.dumps(mesh))
        done = run([str(MESHVER_CLI), "render", "envoy", str(work / "mesh.json")], 60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"meshver render envoy failed:\n{done.stderr}")
    listener = json.loads(done.stdout)["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]


def virtual_host(routes):
    return {"name": "bench", "virtual_hosts": [{
        "name": "bench", "domains": ["*"], "routes": routes,
        "request_headers_to_remove": ["x-meshver-route", "x-meshver-sticky"]}]}


# Arm A's version classes for examples/catalog.json, written by hand: which requested
# versions each route key serves under semver caret rules (1.4.0 | 2.0.3 2.1.0 for user,
# 1.2.0 | 2.0.0 for order), and the version header a route sets. The answer check proves
# they agree with meshver on the mix.
COMP = r"(0|[1-9][0-9]{0,8})"
NATIVE_CLASSES = {
    "user": {"paths": r"/(register|login|acme\.user\.).*", "classes": [
        ("user-v1", "1", rf"1|1\.[0-4]|1\.[0-3]\.{COMP}|1\.4\.0", "1"),
        ("user-v2", "2", r"2|2\.0|2\.0\.[0-3]", "2"),
        ("user-2.1.0", "2.1", r"2\.1|2\.1\.0|2\.0\.([4-9]|[1-9][0-9]{1,8})", None)]},
    "order": {"paths": r"/(order|acme\.order\.).*", "classes": [
        ("order-v1", "1", rf"1|1\.[0-2]|1\.[01]\.{COMP}|1\.2\.0", "1"),
        ("order-v2", "2", r"2|2\.0|2\.0\.0", "2")]},
}


def native_routes(services, lifecycles):
    """Arm A: the whole job in route config, as far as route config can do it."""
    routes = []
    for s in services:
        spec = NATIVE_CLASSES[s["name"]]
        paths, vh, qp = spec["paths"], s["version_header"], s["query_param"]
        problem = json.dumps({"type": "urn:meshver:problem:unsupported-version", "title": "Unsupported API version",
                              "status": 400, "detail": "No deployment serves the requested version.",
                              "service": s["name"], "supported_versions": s["versions"]})
        reject = {"direct_response": {"status": 400, "body": {"inline_string": problem}},
                  "response_headers_to_add": [set_header("content-type", "application/problem+json"),
                                              set_header("api-supported-versions", ", ".join(s["versions"])),
                                              set_header("cache-control", "no-store")]}

        def forward(key, version, extra=None):
            r = {"route": route_action(services, key), "request_headers_to_add": [set_header(vh, version)]}
            r["response_headers_to_add"] = lifecycle_response_headers(lifecycles, key)
            r["route"].update(extra or {})
            return r

        def regex(r):
            return {"regex": r}

        for source in s["sources"]:
            for key, version, cls, major in spec["classes"]:
                if source == "header":
                    m = {"safe_regex": regex(paths), "headers": [
                        {"name": vh, "string_match": {"safe_regex": regex(rf"\s*[vV]?({cls})\s*")}}]}
                    routes.append({"match": m, **forward(key, version)})
                elif source == "path":
                    m = {"safe_regex": regex(rf"/[vV]({cls}){paths}")}
                    routes.append({"match": m, **forward(key, version, {"regex_rewrite": {
                        "pattern": regex(r"^/[vV][0-9.]+"), "substitution": ""}})})
                elif source == "suffix":
                    m = {"safe_regex": regex(rf"{paths}_[vV]({cls})")}
                    routes.append({"match": m, **forward(key, version, {"regex_rewrite": {
                        "pattern": regex(r"_[vV][0-9.]+$"), "substitution": ""}})})
                elif source == "accept":
                    vendor = re.escape(s["accept_vendor"]) if s.get("accept_vendor") else r"[^/+]*"
                    m = {"safe_regex": regex(paths), "headers": [{"name": "accept", "string_match": {"safe_regex": regex(
                        rf".*vnd\.{vendor}\.[vV]({cls})([+;,].*)?|.*;\s*[vV]ersion\s*=\s*\"?[vV]?({cls})\"?\s*([;,].*)?")}}]}
                    routes.append({"match": m, **forward(key, version)})
                elif source == "query":
                    m = {"safe_regex": regex(paths), "query_parameters": [
                        {"name": qp, "string_match": {"safe_regex": regex(cls)}}]}
                    r = forward(key, version)
                    r["typed_per_filter_config"] = {"envoy.filters.http.header_mutation": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
                        "mutations": {"query_parameter_mutations": [{"remove": qp}]}}}
                    routes.append({"match": m, **r})
                elif source == "grpc" and major is not None:
                    m = {"safe_regex": regex(rf"/[^/]*\.[vV]{major}\.[^/]*/.*"), "headers": [
                        {"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}
                    routes.append({"match": {**m, "safe_regex": regex(rf"/(acme\.{s['name']}\.)[^/]*\.[vV]{major}\.[^/]*/.*|/(acme\.{s['name']}\.)[vV]{major}\.[^/]*/.*")},
                                   **forward(key, version)})
            # The source holds something, but no deployment serves it (or it is no version).
            if source == "header":
                m = {"safe_regex": regex(paths), "headers": [{"name": vh, "present_match": True}]}
            elif source == "path":
                m = {"safe_regex": regex(rf"/[vV][0-9][0-9.]*{paths}")}
            elif source == "suffix":
                m = {"safe_regex": regex(rf"{paths}_[vV][0-9][0-9.]*")}
            elif source == "accept":
                m = {"safe_regex": regex(paths), "headers": [{"name": "accept", "string_match": {
                    "safe_regex": regex(r".*vnd\.[^/+]*\.[vV][0-9].*|.*;\s*[vV]ersion\s*=.*")}}]}
            elif source == "query":
                m = {"safe_regex": regex(paths), "query_parameters": [{"name": qp, "present_match": True}]}
            else:
                m = {"safe_regex": regex(r"/[^/]*\.[vV][0-9]+\.[^/]*/.*"), "headers": [
                    {"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}
            routes.append({"match": m, **reject})
        # No version anywhere: the default.
        default_key = next(k for k, v, _, _ in spec["classes"] if v == s["default"])
        routes.append({"match": {"safe_regex": regex(paths)}, **forward(default_key, s["default"])})
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    return virtual_host(routes)


def wasm_filter(name, path, configuration):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": name,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": configuration},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(path)}}}}}}


def lua_catalog(services):
    """The demo catalog as the Lua table bench/lua/meshver.lua reads."""
    def lua(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"[{lua(k)}] = {lua(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "{" + ", ".join(lua(x) for x in v) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if v is None:
            return "nil"
        return json.dumps(v)  # a JSON string is a valid Lua string literal here (ASCII)

    out = []
    for s in services:
        default = [int(x) for x in s["default"].split(".")]
        deployments = []
        for key, version in zip(s["deployments"], s["versions"]):
            major, minor, patch = (int(x) for x in version.split("."))
            deployments.append({"route": key, "major": major, "minor": minor, "patch": patch})
        lines = {}
        for major, line in s["lines"].items():
            lines[major] = {"route": line["route"], "size": len(line["clusters"])}
        svc = {"name": s["name"], "prefixes": s["prefixes"], "sources": s["sources"],
               "version_header": s["version_header"], "query_param": s["query_param"],
               "supported": s["versions"], "deployments": deployments, "lines": lines,
               "default": {"major": default[0], **({"minor": default[1]} if len(default) > 1 else {}),
                           **({"patch": default[2]} if len(default) > 2 else {})}}
        if s.get("accept_vendor"):
            svc["accept_vendor"] = s["accept_vendor"]
        out.append(svc)
    return "CATALOG = " + lua({"route_header": "x-meshver-route", "services": out}) + "\n"


def front_config(arm, admin_port, port, upstream_ports, services, lifecycles, catalog_text, filter_routes):
    """Arm `arm`'s front Envoy; `filter_routes` is what arms B and C route on (rendered_routes)."""
    mutation = {"name": "envoy.filters.http.header_mutation", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"}}
    if arm == "A":
        filters, routes = [mutation], native_routes(services, lifecycles)
    elif arm == "C0":
        filters = [wasm_filter("empty", EMPTY_WASM, ""), mutation]
        routes = native_routes(services, lifecycles)
    elif arm == "C":
        filters, routes = [wasm_filter("meshver", MESHVER_WASM, catalog_text)], filter_routes
    else:
        code = lua_catalog(services) + LUA_PATH.read_text()
        filters = [{"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": code}}}]
        routes = filter_routes
    # The same runtime for every arm: arm A's accept regexes exceed RE2's default program size.
    runtime = {"layers": [{"name": "static", "static_layer": {"re2.max_program_size.error_level": 1000}}]}
    return {"admin": admin(admin_port), "layered_runtime": runtime, "static_resources": {
        "listeners": [listener("front", port, hcm("bench", routes, filters))],
        "clusters": clusters(upstream_ports)}}


# ---------------------------------------------------------------- processes

class Proc:
    """An Envoy pinned to `cpu`, one worker, quiet log; stopped by stop()."""

    _ids = iter(range(1000))

    def __init__(self, name, config, cpu, concurrency=1):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"meshver-bench-{name}-"))
        (self.dir / "envoy.json").write_text(json.dumps(config))
        self.admin = f"http://127.0.0.1:{config['admin']['address']['socket_address']['port_value']}"
        base_id = 400000 + (os.getpid() % 1000) * 100 + next(self._ids) % 100
        cmd = ["taskset", "-c", cpu, str(envoy_binary()), "-c", str(self.dir / "envoy.json"),
               "--concurrency", str(concurrency), "--base-id", str(base_id), "--disable-hot-restart",
               "--log-level", "warn", "--log-path", str(self.dir / "envoy.log")]
        self.out = open(self.dir / "envoy.out", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)
        _children.append(self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if http1("GET", self.admin + "/ready", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        text = self.log()[-4000:]
        self.stop()
        raise RuntimeError(f"{name} did not start:\n{text}")

    def log(self):
        return "".join(p.read_text(errors="replace") for p in (self.dir / "envoy.out", self.dir / "envoy.log")
                       if p.exists())

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mb(self):
        pages = int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1])
        return pages * PAGE / 2**20

    def counter(self, name):
        text = http1("GET", f"{self.admin}/stats?filter=^{name}$", timeout=5).body.decode()
        m = re.search(rf"^{re.escape(name)}: (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_all():
    for p in _children:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- requests

def mix_requests(mix):
    """(kind, method, path, [(name, value)]) for every kind, Host first."""
    out = []
    for kind in mix["kinds"]:
        headers = [("host", mix["host"]), ("user-agent", "meshver-bench")] + list(kind["headers"].items())
        out.append((kind, kind["method"], kind["path"], headers))
    return out


def wrk_script(requests, stop_after=None):
    lines = ["local reqs = {"]
    for _, method, path, headers in requests:
        hs = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers)
        lines.append(f"  wrk.format({json.dumps(method)}, {json.dumps(path)}, {{{hs}}}),")
    lines += ["}", "local i = 0",
              "request = function() i = i % #reqs + 1; return reqs[i] end"]
    if stop_after:
        lines += ["local seen = 0",
                  f"response = function() seen = seen + 1; if seen >= {stop_after} then wrk.thread:stop() end end"]
    return "\n".join(lines) + "\n"


def raw_requests(requests):
    out = b""
    for _, method, path, headers in requests:
        out += f"{method} {path} HTTP/1.1\r\n".encode()
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"
    return out


def check_answers(arm, url, requests, lifecycles):
    """Every kind answered as `expect` says; returns a list of mismatches."""
    problems = []
    for kind, method, path, headers in requests:
        expect = kind["expect"]
        # Line routes pick randomly by weight: ask a few times, every answer must be allowed.
        for _ in range(4 if len(expect.get("deployments", [])) > 1 else 1):
            # http1 sends its own Content-Length for a POST.
            sent = [(k, v) for k, v in headers if k != "content-length"]
            r = http1(method, url + path, headers=sent)
            where = f"arm {arm}, {kind['name']}"
            if r.status != expect["status"]:
                problems.append(f"{where}: status {r.status}, want {expect['status']}: {r.body[:200]!r}")
                continue
            if r.status != 200:
                ctype = r.header("content-type") or ""
                body_type = (r.json or {}).get("type", "") if isinstance(r.json, dict) else ""
                if ctype != "application/problem+json" or not body_type.startswith("urn:meshver:problem:"):
                    problems.append(f"{where}: reject is not problem+json: {ctype} {r.body[:200]!r}")
                if r.header("x-upstream"):
                    problems.append(f"{where}: a reject reached upstream {r.header('x-upstream')}")
                # Envoy closes an HTTP/1.1 connection after its own 400: every arm must, or
                # the arms would differ in how many connections the load generator opens.
                if (r.header("connection") or "").lower() != "close":
                    problems.append(f"{where}: a reject kept the connection open")
                continue
            got = (r.header("x-upstream"), r.header("x-seen-path"), r.header("x-seen-version"))
            if got[0] not in expect["deployments"]:
                problems.append(f"{where}: reached {got[0]}, want one of {expect['deployments']}")
            if got[1] != expect["path"]:
                problems.append(f"{where}: upstream saw path {got[1]}, want {expect['path']}")
            if got[2] != expect["version"]:
                problems.append(f"{where}: upstream saw version {got[2]}, want {expect['version']}")
            want_lc = lifecycles.get(got[0], {}) if expect.get("lifecycle") else {}
            got_lc = {k: r.header(k) for k in ("deprecation", "sunset", "link") if r.header(k) is not None}
            if got_lc != want_lc:
                problems.append(f"{where}: lifecycle headers {got_lc}, want {want_lc}")
    return problems


def run(cmd, timeout):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def wrk_cmd(url, script, connections, duration):
    return ["taskset", "-c", LOADGEN_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "2s",
            "-s", str(script), url]


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, total, errors


# ---------------------------------------------------------------- one arm, one round

def url_of(config):
    return f"http://127.0.0.1:{config['static_resources']['listeners'][0]['address']['socket_address']['port_value']}"


def counts(front):
    """Envoy's CPU seconds, then its listener's requests and 2xx, 4xx, 5xx answers (admin
    requests are not counted in the listener's http.bench stats)."""
    names = ("total", "2xx", "4xx", "5xx")
    return [front.cpu_seconds()] + [front.counter(f"http.bench.downstream_rq_{n}") for n in names]


def send_count(front, url, script, connections):
    """Runs a count-limited wrk script to its end. wrk's main thread sleeps for the whole -d
    even after its worker stopped at the count, so it is stopped as soon as Envoy goes idle
    (read from /proc, which costs Envoy nothing)."""
    gen = subprocess.Popen(wrk_cmd(url, script, connections, 60), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    _children.append(gen)
    start = last = front.cpu_seconds()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and gen.poll() is None:
        time.sleep(0.1)
        now_cpu = front.cpu_seconds()
        if now_cpu == last and now_cpu > start:
            break
        last = now_cpu
    gen.send_signal(signal.SIGINT)
    try:
        gen.wait(5)
    except subprocess.TimeoutExpired:
        gen.kill()
        gen.wait()


def cpu_per_request(configs, args, paths):
    """(1) CPU per request of every arm over a fixed number of requests, sent in BURSTS that
    alternate between the arms (every arm's Envoy up, all on the Envoy CPU, one loaded at a
    time), so that a slow spell of the shared machine falls on every arm alike. Each Envoy is
    read once before its first burst and once after its last: /proc counts CPU in 10 ms ticks,
    and one reading per burst would add that rounding eight times."""
    fronts = {arm: Proc(f"cpu-{arm}", configs[arm], ENVOY_CPU) for arm in ARMS}
    try:
        for arm in ARMS:  # warm-up: V8 tiers the module up, connections open
            run(wrk_cmd(url_of(configs[arm]), paths["wrk"], args.connections, 1), 30)
        before = {arm: counts(front) for arm, front in fronts.items()}
        for burst in range(BURSTS):
            for arm in ARMS[burst % len(ARMS):] + ARMS[:burst % len(ARMS)]:
                send_count(fronts[arm], url_of(configs[arm]), paths["wrk_burst"], args.connections)
        result = {}
        for arm, front in fronts.items():
            cpu, n, s2xx, s4xx, s5xx = (b - a for a, b in zip(before[arm], counts(front)))
            result[arm] = {"cpu_us_per_req": cpu / n * 1e6, "cpu_requests": n, "status_2xx": s2xx,
                           "status_4xx": s4xx, "status_5xx": s5xx}
        return result
    finally:
        for front in fronts.values():
            front.stop()


def measure(arm, config, args, paths):
    front = Proc(f"front-{arm}", config, ENVOY_CPU)
    try:
        url = url_of(config)
        # Warm-up (V8 tiers up, connections open), then idle memory.
        run(wrk_cmd(url, paths["wrk"], args.connections, 1), 30)
        time.sleep(0.5)
        rss_idle = front.rss_mb()

        # (2) Throughput at saturation, and memory under load.
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.wait(0.2):
                samples.append(front.rss_mb())
        sampler = threading.Thread(target=sample)
        c0, t0 = front.cpu_seconds(), time.monotonic()
        sampler.start()
        out = run(wrk_cmd(url, paths["wrk"], args.connections, args.duration), args.duration + 30)
        stop.set()
        sampler.join()
        busy = (front.cpu_seconds() - c0) / (time.monotonic() - t0)
        rps, total, errors = parse_wrk(out.stdout)

        # (3) Latency at a fixed open-loop rate.
        lat = json.loads(run([ "taskset", "-c", LOADGEN_CPU, str(OPENLOOP), url.removeprefix("http://"),
                               str(paths["raw"]), str(args.rate), str(args.latency_count), "8"],
                             args.latency_count / args.rate + 30).stdout)
        crit = [line for line in front.log().splitlines() if "[critical]" in line]
        return {"rps": rps, "wrk_total": total, "wrk_errors": errors,
                "envoy_core_busy": busy, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                "p999_us": lat["p999_us"], "latency_errors": lat["errors"], "latency_statuses": lat["statuses"],
                "achieved_rate": lat["achieved_rate"], "rss_idle_mb": rss_idle,
                "rss_load_mb": max(samples) if samples else front.rss_mb(),
                "critical_log_lines": crit[:5]}
    finally:
        front.stop()


def rss_per_worker(arm, config, args, paths, rss_one_worker):
    """RSS with two workers minus RSS with one (both after the same warm-up): what each
    further worker costs, without the main thread's one-off share (for wasm: its own VM)."""
    front = Proc(f"mem-{arm}", config, f"{ENVOY_CPU},{LOADGEN_CPU}", concurrency=2)
    try:
        run(wrk_cmd(url_of(config), paths["wrk"], args.connections, 1), 30)
        time.sleep(0.5)
        return front.rss_mb() - rss_one_worker
    finally:
        front.stop()


def by_kind(mix, configs, args):
    """CPU per request of each arm for each kind alone, the forwarded kinds, the rejected kinds
    and the whole mix: where an arm's cost comes from. Each group is measured as the main run's
    CPU step measures the whole mix (`cpu_per_request`), --rounds times; medians."""
    groups = [(k["name"], [k]) for k in mix["kinds"]]
    groups += [("forwarded kinds", [k for k in mix["kinds"] if k["expect"]["status"] == 200]),
               ("rejected kinds", [k for k in mix["kinds"] if k["expect"]["status"] != 200]),
               ("whole mix", mix["kinds"])]
    work = Path(tempfile.mkdtemp(prefix="meshver-bench-kind-"))
    paths = {"wrk": work / "kind.lua", "wrk_burst": work / "kind-burst.lua"}
    rows = []
    try:
        for name, kinds in groups:
            requests = mix_requests({**mix, "kinds": kinds})
            paths["wrk"].write_text(wrk_script(requests))
            paths["wrk_burst"].write_text(wrk_script(requests, stop_after=args.count // BURSTS))
            cpu = {arm: [] for arm in ARMS}
            for _ in range(args.rounds):
                for arm, measured in cpu_per_request(configs, args, paths).items():
                    cpu[arm].append(measured["cpu_us_per_req"])
            base = statistics.median(cpu["A"])
            cells = [f"{base:.2f}"] + [f"{statistics.median(cpu[a]):.2f} ({statistics.median(cpu[a]) - base:+.2f})"
                                        for a in ARMS if a != "A"]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
            log(rows[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = "| requests | A native (µs) | " + " | ".join(f"{a} {ARM_NAMES[a]} (added)" for a in ARMS if a != "A")
    return "\n".join([head + " |", "|---|" + "---|" * len(ARMS), *rows])


# ---------------------------------------------------------------- report

METRICS = [("cpu_us_per_req", "Envoy CPU per request (µs)", 2), ("rps", "throughput at saturation (req/s)", 0),
           ("p50_us", "p50 latency at fixed rate (µs)", 0), ("p99_us", "p99 latency at fixed rate (µs)", 0),
           ("rss_idle_mb", "RSS idle, 1 worker (MiB)", 1), ("rss_load_mb", "RSS under load, 1 worker (MiB)", 1),
           ("rss_per_worker_mb", "RSS of each further worker (MiB)", 1)]


def summarize(rounds):
    summary = {}
    for arm in ARMS:
        summary[arm] = {}
        for key, _, _ in METRICS:
            values = [r[arm][key] for r in rounds]
            ratios = [r[arm][key] / r["A"][key] if r["A"][key] else float("nan") for r in rounds]
            summary[arm][key] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                 "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                                 "ratio_max": max(ratios)}
        for key in ("cpu_us_per_req", "rss_idle_mb", "rss_load_mb", "rss_per_worker_mb"):
            added = [r[arm][key] - r["A"][key] for r in rounds]
            summary[arm][f"added_{key}"] = {"median": statistics.median(added), "min": min(added), "max": max(added)}
        summary[arm]["envoy_core_busy"] = statistics.median(r[arm]["envoy_core_busy"] for r in rounds)
    return summary


def table(summary, module_sizes, decide_ns):
    out = ["| metric | " + " | ".join(f"{a} {ARM_NAMES[a]}" for a in ARMS) + " |",
           "|---|" + "---|" * len(ARMS)]
    for key, label, digits in METRICS:
        cells = []
        for arm in ARMS:
            s = summary[arm][key]
            cell = f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"
            if arm != "A":
                cell += f"<br>×{s['ratio_median']:.3f} ({s['ratio_min']:.3f}–{s['ratio_max']:.3f})"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in (("cpu_us_per_req", "added CPU per request vs A (µs)"),
                       ("rss_load_mb", "added RSS under load vs A (MiB, 1 worker)"),
                       ("rss_per_worker_mb", "added RSS per further worker vs A (MiB)")):
        cells = ["—"] + [f"{summary[a]['added_' + key]['median']:+.2f} ({summary[a]['added_' + key]['min']:+.2f}"
                         f"–{summary[a]['added_' + key]['max']:+.2f})" for a in ARMS[1:]]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("| Envoy core busy during saturation | " +
               " | ".join(f"{summary[a]['envoy_core_busy'] * 100:.0f}%" for a in ARMS) + " |")
    return "\n".join(out)


def targets(summary, rounds, module_bytes, decide_ns_per_req):
    b, c = summary["B"], summary["C"]
    added_c = c["added_cpu_us_per_req"]["median"]
    # meshver against Lua, like everything else, within each round first.
    vs_lua_rps = statistics.median(r["C"]["rps"] / r["B"]["rps"] for r in rounds)
    vs_lua_cpu = statistics.median((r["C"]["cpu_us_per_req"] - r["A"]["cpu_us_per_req"])
                                   / (r["B"]["cpu_us_per_req"] - r["A"]["cpu_us_per_req"]) for r in rounds)
    rows = [
        ("meshver added CPU per request over A ≤ 5 µs", f"{added_c:.2f} µs", added_c <= 5),
        ("meshver throughput ≥ 0.90 × A", f"×{c['rps']['ratio_median']:.3f}", c["rps"]["ratio_median"] >= 0.90),
        ("meshver throughput ≥ 1.2 × Lua", f"×{vs_lua_rps:.3f}", vs_lua_rps >= 1.2),
        ("meshver added CPU ≤ 0.8 × Lua's", f"×{vs_lua_cpu:.3f}", vs_lua_cpu <= 0.8),
        ("meshver p99 at fixed rate ≤ 1.15 × A", f"×{c['p99_us']['ratio_median']:.3f}",
         c["p99_us"]["ratio_median"] <= 1.15),
        ("release module ≤ 1 MB (1,000,000 bytes)", f"{module_bytes:,} bytes", module_bytes <= 1_000_000),
        ("added RSS per worker ≤ 20 MB", f"{c['added_rss_per_worker_mb']['median']:+.1f} MiB per further worker; "
         f"{c['added_rss_load_mb']['median']:+.1f} MiB for a 1-worker Envoy under load (main thread's VM included)",
         c["added_rss_per_worker_mb"]["median"] * 2**20 <= 20e6),
        ("decision path natively < 1 µs per request", f"{decide_ns_per_req:.0f} ns" if decide_ns_per_req else "n/a",
         bool(decide_ns_per_req) and decide_ns_per_req < 1000),
    ]
    lines = ["| target | measured (median) | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'met' if ok else '**missed**'} |" for t, m, ok in rows]
    return "\n".join(lines)


def decide_in_v8():
    """bench/decide-wasm timed by node (V8): the decision path inside the VM, no host calls."""
    module = ROOT / "target/wasm32-wasip1/release/meshver_bench_decide_wasm.wasm"
    node = shutil.which("node")
    if not node or not module.exists():
        return None
    done = run(["taskset", "-c", ENVOY_CPU, node, str(ROOT / "bench/decide-wasm/run.mjs"), str(module)], 120)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None


def criterion_ns(name_fragment):
    """Median estimate (ns) of a criterion benchmark whose directory name contains the fragment."""
    base = ROOT / "target/bench-decide/criterion/decide"
    for d in sorted(base.glob("*")) if base.exists() else []:
        if name_fragment in d.name:
            est = json.loads((d / "new/estimates.json").read_text())
            return est["median"]["point_estimate"]
    return None


def main():
    global MESHVER_WASM, ARMS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=40000, help="requests of the fixed-count CPU run")
    p.add_argument("--duration", type=int, default=4, help="seconds of the saturation run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=int, default=2000, help="open-loop rate (req/s) of the latency run")
    p.add_argument("--latency-count", type=int, default=20000)
    p.add_argument("--check-only", action="store_true")
    p.add_argument("--report", type=Path, help="only re-render the results of a saved run (bench/results/latest.json)")
    p.add_argument("--arms", default=",".join(ARMS), help="arms to run (A is always run: ratios need it)")
    p.add_argument("--meshver-wasm", type=Path, default=None, help="another build of the filter, to compare")
    p.add_argument("--by-kind", action="store_true",
                   help="only CPU per request for each kind of the mix alone, the forwarded and the rejected "
                        "kinds, and the whole mix (--rounds rounds of --count requests per arm); prints a table")
    args = p.parse_args()

    if args.report:
        return publish(json.loads(args.report.read_text()), write=args.report.name == "latest.json")
    MESHVER_WASM = (args.meshver_wasm or MESHVER_WASM).resolve()
    ARMS = [a for a in ARMS if a == "A" or a in args.arms.split(",")]
    for path in (MESHVER_WASM, EMPTY_WASM, OPENLOOP, MESHVER_CLI):
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench` (it builds it)")
    catalog_text = CATALOG_PATH.read_text()
    services = catalog_facts(json.loads(catalog_text))
    lifecycles = lifecycle_of(services)
    mix = json.loads(MIX_PATH.read_text())
    requests = mix_requests(mix)
    work = Path(tempfile.mkdtemp(prefix="meshver-bench-"))
    paths = {"wrk": work / "mix.lua", "wrk_burst": work / "mix-burst.lua", "raw": work / "mix.http"}
    paths["wrk"].write_text(wrk_script(requests))
    # wrk -t1: one thread, so the per-thread limit is the run's limit.
    paths["wrk_burst"].write_text(wrk_script(requests, stop_after=args.count // BURSTS))
    paths["raw"].write_bytes(raw_requests(requests))

    cpu_model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith("model name")), "?")
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    envoy_version = run([str(envoy_binary()), "--version"], 30).stdout.strip().split("version:")[-1].strip()
    machine = (f"{os.cpu_count()} CPUs ({cpu_model}), {mem_gib:.1f} GiB RAM, Linux {os.uname().release}, "
               f"Envoy {envoy_version}")
    log(f"machine: {machine}")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    uptime_before = run(["uptime"], 5).stdout.strip()
    log(f"uptime before: {uptime_before}")
    upstream_ports = {d: free_port() for s in services for d in s["deployments"]}
    upstream = Proc("upstream", upstream_config(free_port(), upstream_ports), LOADGEN_CPU)
    configs = {}
    try:
        filter_routes = rendered_routes(upstream_ports)
        for arm in ARMS:
            configs[arm] = front_config(arm, free_port(), free_port(), upstream_ports, services, lifecycles,
                                        catalog_text, filter_routes)
        # Check every arm's answers before timing any.
        failures = []
        for arm in ARMS:
            front = Proc(f"check-{arm}", configs[arm], ENVOY_CPU)
            try:
                problems = check_answers(arm, url_of(configs[arm]), requests, lifecycles)
            finally:
                front.stop()
            log(f"check arm {arm} ({ARM_NAMES[arm]}): {'ok' if not problems else 'WRONG'} "
                f"({len(requests)} kinds)")
            failures += problems
        if failures:
            for f in failures:
                log("  " + f)
            sys.exit("some arm answers wrongly: no timing")
        if args.check_only:
            return
        if args.by_kind:
            return print(by_kind(mix, configs, args))

        rounds = []
        for r in range(args.rounds):
            order = ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]
            result = cpu_per_request(configs, args, paths)
            for arm in order:
                result[arm].update(measure(arm, configs[arm], args, paths))
                m = result[arm]
                m["rss_per_worker_mb"] = rss_per_worker(arm, configs[arm], args, paths, m["rss_idle_mb"])
                log(f"round {r + 1}/{args.rounds} arm {arm:2}: cpu {m['cpu_us_per_req']:6.2f} µs/req  "
                    f"{m['rps']:8.0f} req/s (core {m['envoy_core_busy'] * 100:3.0f}%)  p50 {m['p50_us']:6.0f} µs  "
                    f"p99 {m['p99_us']:6.0f} µs  rss {m['rss_idle_mb']:.1f}/{m['rss_load_mb']:.1f} MiB "
                    f"(+{m['rss_per_worker_mb']:.1f} per worker)  "
                    f"2xx/4xx/5xx {m['status_2xx']}/{m['status_4xx']}/{m['status_5xx']}")
                if m["status_5xx"] or m["wrk_errors"] or m["latency_errors"] or m["critical_log_lines"]:
                    log(f"  WARNING: errors in arm {arm}: {m['status_5xx']} 5xx, {m['wrk_errors']} wrk errors, "
                        f"{m['latency_errors']} open-loop errors, {m['critical_log_lines']}")
            rounds.append(result)
    finally:
        upstream.stop()
        stop_all()
        shutil.rmtree(work, ignore_errors=True)

    uptime_after = run(["uptime"], 5).stdout.strip()
    log(f"uptime after: {uptime_after}")
    summary = summarize(rounds)
    module_bytes = MESHVER_WASM.stat().st_size
    mix_ns = criterion_ns("mix of")
    decide_ns = mix_ns / len(requests) if mix_ns else None
    in_v8 = decide_in_v8()
    RESULTS.mkdir(exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine, "uptime_before": uptime_before, "uptime_after": uptime_after,
              "loadavg_before": load_before, "module_bytes": module_bytes,
              "empty_module_bytes": EMPTY_WASM.stat().st_size, "decide_ns_per_request": decide_ns,
              "decide_in_v8": in_v8, "mix_kinds": len(requests), "arms": ARMS, "summary": summary, "rounds": rounds}
    official = len(ARMS) == 4 and MESHVER_WASM == (ROOT / "target/wasm32-wasip1/release/meshver.wasm").resolve()
    (RESULTS / ("latest.json" if official else "experiment.json")).write_text(json.dumps(report, indent=1))
    publish(report, write=official)


def publish(report, write):
    """The results text (printed, and put between the markers of BENCHMARKS.md if `write`)."""
    summary, rounds, in_v8, decide_ns = report["summary"], report["rounds"], report["decide_in_v8"], \
        report["decide_ns_per_request"]
    text = "\n\n".join([
        f"Run of {report['date']}: {len(rounds)} rounds, arms interleaved (order rotated each round); "
        f"median (min–max over rounds), and the median ratio to arm A of the same round (min–max).",
        table(summary, None, decide_ns),
        targets(summary, rounds, report["module_bytes"], decide_ns) if len(report["arms"]) == 4
        else "(the targets need all four arms)",
        f"meshver.wasm: {report['module_bytes']:,} bytes; empty filter: {report['empty_module_bytes']:,} bytes. "
        f"Decision path (criterion, whole mix / {report['mix_kinds']}): "
        + (f"{decide_ns:.0f} ns per request natively" if decide_ns else "not measured natively (run the criterion bench)")
        + (f"; compiled to wasm and run in V8 by node (bench/decide-wasm): "
           f"{in_v8['bench_decide_ns_per_request']} ns per request, "
           f"{in_v8['bench_decide_with_map_ns_per_request']} ns with the reading of the serialised header "
           f"map that the host adapter does." if in_v8 else "."),
        f"Machine: {report['machine']}.",
        f"Load: `{report['uptime_before']}` before, `{report['uptime_after']}` after."])
    log("\n" + text)
    if write and BENCHMARKS_MD.exists():
        md = BENCHMARKS_MD.read_text()
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        if start in md and end in md:
            md = md[:md.index(start) + len(start)] + "\n" + text + "\n" + md[md.index(end):]
            BENCHMARKS_MD.write_text(md)
            log(f"\nresults written to {BENCHMARKS_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
