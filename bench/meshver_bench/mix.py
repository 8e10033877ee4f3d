"""The request mix (bench/mix.json): as wrk scripts and raw bytes, and the answer check.

Every kind is sent in turn; `expect` in the mix is the answer every arm must give.
"""

import json

from .catalog import LIFECYCLE_HEADERS
from .env import harness


def requests(mix, kinds=None):
    """(kind, method, path, [(name, value)]) for every kind (or those given), Host first."""
    out = []
    for kind in mix["kinds"] if kinds is None else kinds:
        headers = [("host", mix["host"]), ("user-agent", "meshver-bench")] + list(kind["headers"].items())
        out.append((kind, kind["method"], kind["path"], headers))
    return out


def wrk_script(reqs, stop_after=None, body_file=None):
    """A wrk Lua script sending the requests in turn; with `stop_after`, its thread stops after
    that many answers (wrk -t1: one thread, so that is the run's count); with `body_file`,
    every request carries that file's bytes as its body (wrk adds the Content-Length)."""
    lines = ["local body = nil"]
    if body_file:
        lines += [f"local file = assert(io.open({json.dumps(str(body_file))}, 'rb'))",
                  "body = file:read('*a')", "file:close()"]
    lines.append("local reqs = {")
    for _, method, path, headers in reqs:
        hs = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers)
        lines.append(f"  wrk.format({json.dumps(method)}, {json.dumps(path)}, {{{hs}}}, body),")
    lines += ["}", "local i = 0",
              "request = function() i = i % #reqs + 1; return reqs[i] end"]
    if stop_after:
        lines += ["local seen = 0",
                  f"response = function() seen = seen + 1; if seen >= {stop_after} then wrk.thread:stop() end end"]
    return "\n".join(lines) + "\n"


def raw_requests(reqs):
    """The requests as HTTP/1.1 bytes, for bench/openloop."""
    out = b""
    for _, method, path, headers in reqs:
        out += f"{method} {path} HTTP/1.1\r\n".encode()
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"
    return out


def check_answers(arm, url, reqs, lifecycles):
    """Every kind answered as its `expect` says; returns a list of mismatches.

    lifecycles: deployment route key -> the lifecycle headers its answers carry, as the
    compiled catalog gives them (catalog.lifecycle_headers)."""
    problems = []
    for kind, method, path, headers in reqs:
        expect = kind["expect"]
        # Line routes pick randomly by weight: ask a few times, every answer must be allowed.
        for _ in range(4 if len(expect.get("deployments", [])) > 1 else 1):
            # http1 sends its own Content-Length for a POST.
            sent = [(k, v) for k, v in headers if k != "content-length"]
            r = harness.http1(method, url + path, headers=sent)
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
            if expect.get("lifecycle") and not want_lc:
                problems.append(f"{where}: the compiled catalog gives {got[0]} no lifecycle headers")
            got_lc = {k: r.header(k) for k in {*LIFECYCLE_HEADERS, *want_lc} if r.header(k) is not None}
            if got_lc != want_lc:
                problems.append(f"{where}: lifecycle headers {got_lc}, want {want_lc}")
    return problems
