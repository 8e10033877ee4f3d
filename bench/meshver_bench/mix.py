"""The request mix (bench/mix.json): as wrk scripts, raw bytes and h2load runs, and the answer
check.

Every kind is sent in turn; `expect` in the mix is the answer every arm must give, over HTTP/1.1
and over HTTP/2 alike.
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


def h2load_runs(reqs, url, per_kind, connections=1, streams=8):
    """One h2load command per kind, sending that kind `per_kind` times over HTTP/2 (h2c, prior
    knowledge): h2load sends one set of headers per run. `per_kind` >= connections (h2load gives
    every connection at least one request)."""
    runs = []
    for _, method, path, headers in reqs:
        # No body: the method is set as a header (h2load's -d would need a file it can map).
        cmd = ["h2load", "-n", str(per_kind), "-c", str(connections), "-m", str(streams), "-H", f":method: {method}"]
        for name, value in headers:
            if name == "host":
                cmd += ["-H", f":authority: {value}"]
            elif name != "content-length":  # h2load frames the (empty) body itself
                cmd += ["-H", f"{name}: {value}"]
        runs.append(cmd + [url + path])
    return runs


def check_answers(arm, url, reqs, lifecycles, http2=False):
    """Every kind answered as its `expect` says, over HTTP/1.1 (or HTTP/2 with `http2`); returns a
    list of mismatches.

    lifecycles: deployment route key -> the lifecycle headers its answers carry, as the
    compiled catalog gives them (catalog.lifecycle_headers)."""
    send = harness.http2 if http2 else harness.http1
    protocol = "HTTP/2" if http2 else "HTTP/1.1"
    problems = []
    for kind, method, path, headers in reqs:
        expect = kind["expect"]
        where = f"arm {arm}, {kind['name']} over {protocol}"
        # The clients frame a POST's (empty) body themselves (over HTTP/2, httpx sends Host as
        # :authority).
        sent = [(k, v) for k, v in headers if k != "content-length"]
        if expect.get("sticky"):
            problems += _check_sticky(where, expect, lambda h: send(method, url + path, headers=h), sent, lifecycles,
                                      http2)
            continue
        # Line routes pick randomly by weight: ask a few times, every answer must be allowed.
        for _ in range(4 if len(expect.get("deployments", [])) > 1 else 1):
            problems += _check_one(where, expect, send(method, url + path, headers=sent), lifecycles, http2)
    return problems


# Sticky kinds: how many client keys are tried, each twice. If the choice ignored the key, 40
# keys would all be answered twice alike by chance with probability (0.9² + 0.1²)⁴⁰ < 10⁻³ on a
# 90/10 line; a hash sends all 40 to the same deployment with probability 0.9⁴⁰ ≈ 1.5%, so the
# spread is checked over the keys and the kind's own key together.
STICKY_KEYS = 40


def _check_sticky(where, expect, send, headers, lifecycles, http2):
    """A sticky kind: its own key and STICKY_KEYS others derived from it, each sent twice; every
    answer as `expect` says, each key's two from the same deployment, more than one reached."""
    header = expect["sticky"]
    own = dict(headers)[header]
    problems, reached = [], set()
    for key in [own] + [f"{own}-{i}" for i in range(STICKY_KEYS)]:
        keyed = [(k, key if k == header else v) for k, v in headers]
        answers = [send(keyed) for _ in range(2)]
        for r in answers:
            problems += _check_one(where, expect, r, lifecycles, http2)
        first, second = (r.header("x-upstream") for r in answers)
        if first != second:
            problems.append(f"{where}: client key {key!r} reached {first} then {second}")
        reached.add(first)
    if len(reached) < 2:
        problems.append(f"{where}: {STICKY_KEYS + 1} client keys all reached {reached}: the key does not choose")
    return problems


def _check_one(where, expect, r, lifecycles, http2):
    """The mismatches of one answer `r` with its kind's `expect`."""
    problems = []
    if r.status != expect["status"]:
        return [f"{where}: status {r.status}, want {expect['status']}: {r.body[:200]!r}"]
    if "grpc_status" in expect:
        # A rejected gRPC call: HTTP 200 with the gRPC status, nothing reached upstream, and
        # (HTTP/1.1) the connection kept, as Envoy does for a local 200.
        want = {"content-type": "application/grpc", "grpc-status": expect["grpc_status"],
                "meshver-problem-type": f"urn:meshver:problem:{expect['problem']}"}
        got = {k: r.header(k) for k in want}
        if got != want:
            problems.append(f"{where}: gRPC answer {got}, want {want}")
        if not r.header("grpc-message") or not r.header("api-supported-versions"):
            problems.append(f"{where}: gRPC answer without grpc-message or api-supported-versions")
        if r.header("x-upstream"):
            problems.append(f"{where}: a reject reached upstream {r.header('x-upstream')}")
        if not http2 and (r.header("connection") or "").lower() == "close":
            problems.append(f"{where}: a gRPC reject closed the connection")
        return problems
    if r.status != 200:
        ctype = r.header("content-type") or ""
        body_type = (r.json or {}).get("type", "") if isinstance(r.json, dict) else ""
        if ctype != "application/problem+json" or not body_type.startswith("urn:meshver:problem:"):
            problems.append(f"{where}: reject is not problem+json: {ctype} {r.body[:200]!r}")
        if r.header("x-upstream"):
            problems.append(f"{where}: a reject reached upstream {r.header('x-upstream')}")
        # Envoy closes an HTTP/1.1 connection after its own 400: every arm must, or the arms
        # would differ in how many connections the load generator opens.
        if not http2 and (r.header("connection") or "").lower() != "close":
            problems.append(f"{where}: a reject kept the connection open")
        return problems
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
