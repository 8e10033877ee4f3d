"""Part 1 through the real Envoy: every version source and form, the rewrite the upstream
sees, conflicts and rejections, owned headers, over HTTP/1.1 and HTTP/2."""

import json
import urllib.parse

import pytest

import harness
from harness import http1, http2

PROTOCOLS = {"http1": http1, "http2": http2}
V2_LINE = {"2.0.3", "2.1.0"}

# (path, request headers, service, versions that may answer, path the upstream sees,
#  x-api-version the upstream sees)
FORWARDED = [
    # No version: the default (1) serves the 1.x line.
    ("/register", {}, "user", {"1.4.0"}, "/register", "1"),
    ("/login", {}, "user", {"1.4.0"}, "/login", "1"),
    # Header, each accepted form, normalised for the upstream.
    ("/register", {"x-api-version": "2"}, "user", V2_LINE, "/register", "2"),
    ("/register", {"x-api-version": "v2"}, "user", V2_LINE, "/register", "2"),
    ("/register", {"x-api-version": "V2"}, "user", V2_LINE, "/register", "2"),
    ("/register", {"x-api-version": " 2.1 "}, "user", {"2.1.0"}, "/register", "2.1"),
    ("/register", {"x-api-version": "2.1.0"}, "user", {"2.1.0"}, "/register", "2.1.0"),
    ("/register", {"x-api-version": "1.4.0"}, "user", {"1.4.0"}, "/register", "1.4.0"),
    # Path prefix, stripped.
    ("/v2/register", {}, "user", V2_LINE, "/register", "2"),
    ("/V2.1/login?x=1", {}, "user", {"2.1.0"}, "/login?x=1", "2.1"),
    ("/v1/login", {}, "user", {"1.4.0"}, "/login", "1"),
    # The older suffix form, stripped.
    ("/register_v2", {}, "user", V2_LINE, "/register", "2"),
    ("/login_v2.1", {}, "user", {"2.1.0"}, "/login", "2.1"),
    # Accept: a version parameter or a vendor media type; Accept itself is left as sent.
    ("/register", {"accept": "application/json; version=2"}, "user", V2_LINE, "/register", "2"),
    ("/register", {"accept": "application/vnd.acme.v2.1+json"}, "user", {"2.1.0"}, "/register", "2.1"),
    ("/register", {"accept": "application/vnd.other.v2+json"}, "user", {"1.4.0"}, "/register", "1"),
    # Query parameter, removed; other parameters kept in order.
    ("/register?api-version=2", {}, "user", V2_LINE, "/register", "2"),
    ("/register?a=1&api-version=2.1&b=2", {}, "user", {"2.1.0"}, "/register?a=1&b=2", "2.1"),
    # gRPC: the package carries the version; the path is the gRPC method and stays.
    ("/acme.user.v2.UserService/Register", {"content-type": "application/grpc"}, "user", V2_LINE,
     "/acme.user.v2.UserService/Register", "2"),
    # Sources that agree are one request.
    ("/v2/register", {"x-api-version": "2"}, "user", V2_LINE, "/register", "2"),
    # The order service, its own lines.
    ("/order", {}, "order", {"1.2.0"}, "/order", "1"),
    ("/v2/order", {}, "order", {"2.0.0"}, "/order", "2"),
]

# (path, request headers, problem type, requested_version in the body or None)
REJECTED = [
    ("/register", {"x-api-version": "3"}, "unsupported-version", "3"),
    ("/register", {"x-api-version": "2.2"}, "unsupported-version", "2.2"),
    ("/v3/register", {}, "unsupported-version", "3"),
    ("/register", {"x-api-version": "two"}, "malformed-version", None),
    ("/register", {"x-api-version": "2.x"}, "malformed-version", None),
    ("/register", {"x-api-version": "2.1.3-beta"}, "malformed-version", None),
    ("/v02/register", {}, "malformed-version", None),
    ("/register?api-version=latest", {}, "malformed-version", None),
    ("/register", {"accept": "application/json; version=next"}, "malformed-version", None),
    ("/v1/register", {"x-api-version": "2"}, "version-conflict", None),
    ("/register_v1?api-version=2", {}, "version-conflict", None),
    ("/register", {"x-api-version": "2", "accept": "application/vnd.acme.v1+json"}, "version-conflict", None),
]


def upstream_requests(demo):
    """Requests every upstream cluster has received, from Envoy's own counters."""
    stats = demo.envoy.stats()
    return sum(v for k, v in stats.items() if k.startswith("cluster.") and k.endswith(".upstream_rq_total"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("path,headers,service,versions,upstream_path,version_header", FORWARDED,
                         ids=[f"{c[0]} {c[1]}" for c in FORWARDED])
def test_forwarded(demo, protocol, path, headers, service, versions, upstream_path, version_header):
    answer = PROTOCOLS[protocol]("POST", demo.url + path, headers)
    assert answer.status in (200, 404), answer.body  # 404: the upstream has no gRPC method
    seen = answer.json
    assert (seen["service"], seen["path"]) == (service, upstream_path)
    assert seen["version"] in versions
    assert seen["headers"]["x-api-version"] == version_header
    # Nothing of the filter's own headers leaks to the upstream except what it set itself.
    assert not [h for h in seen["headers"] if h.startswith("x-meshver-")], seen["headers"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("path,headers,kind,requested", REJECTED, ids=[f"{c[0]} {c[1]}" for c in REJECTED])
def test_rejected(demo, protocol, path, headers, kind, requested):
    before = upstream_requests(demo)
    answer = PROTOCOLS[protocol]("POST", demo.url + path, headers)
    assert answer.status == 400
    assert answer.header("content-type") == "application/problem+json"
    assert answer.header("api-supported-versions") == "1.4.0, 2.0.3, 2.1.0"
    problem = json.loads(answer.body)
    assert problem["type"] == f"urn:meshver:problem:{kind}"
    assert problem["status"] == 400
    assert problem["title"] and problem["detail"]
    assert problem["service"] == "user"
    assert problem["supported_versions"] == ["1.4.0", "2.0.3", "2.1.0"]
    assert problem.get("requested_version") == requested
    assert upstream_requests(demo) == before, "a rejected request reached an upstream"


def test_rejection_details_name_what_was_wrong(demo):
    conflict = http1("POST", demo.url + "/v1/register", {"x-api-version": "2"}).json
    assert "header x-api-version" in conflict["detail"] and "path segment" in conflict["detail"], conflict
    malformed = http1("POST", demo.url + "/register", {"x-api-version": "two"}).json
    assert '"two"' in malformed["detail"], malformed
    unsupported = http1("POST", demo.url + "/register", {"x-api-version": "3"}).json
    assert "^3" in unsupported["detail"] and "2.1.0" in unsupported["detail"], unsupported


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clients_cannot_pick_a_backend(demo, protocol):
    """x-meshver-* headers from a client are removed before the filter writes its own."""
    forged = {"x-meshver-route": "user-2.1.0", "x-meshver-sticky": "1", "x-meshver-anything": "x"}
    for _ in range(20):
        answer = PROTOCOLS[protocol]("POST", demo.url + "/register", forged)
        assert answer.json["version"] == "1.4.0"
        assert not [h for h in answer.json["headers"] if h.startswith("x-meshver-")]


def test_unmatched_paths_are_left_alone(demo):
    answer = http1("GET", demo.url + "/nothing-here?api-version=garbage", {"x-api-version": "garbage"})
    assert answer.status == 404
    assert answer.header("content-type") == "application/json"


def test_the_2x_line_is_split_by_the_mesh(demo):
    """Unpinned 2.x requests are spread by Envoy's weighted_clusters (90/10), pinned ones are not.
    Each deployment's share is within 5 standard deviations of its weight."""
    user = next(s for s in demo.compiled["services"] if s["name"] == "user")
    weights = {d["version"]: d["weight"] for d in user["deployments"] if d["major"] == 2}
    versions = [http1("POST", demo.url + "/register", {"x-api-version": "2"}).json["version"]
                for _ in range(300)]
    assert set(versions) == set(weights) == V2_LINE, versions
    for version, weight in weights.items():
        low, high = harness.binomial_bounds(len(versions), weight / 100)
        assert low <= versions.count(version) <= high, (version, versions.count(version), low, high)
    for _ in range(30):
        assert http1("POST", demo.url + "/register", {"x-api-version": "2.1"}).json["version"] == "2.1.0"


def test_outcomes_are_counted_in_envoys_stats():
    """Counters per service and outcome (labels of meshver_requests_total, named once in
    src/metrics.rs; tests/test_metrics.py checks every label), summed over workers; each worker
    hands its counts to Envoy once a second (src/host/counters.rs). A stack of its own, so that
    no other test's counts can land while this one counts."""
    wanted = {"user.forwarded": 3, "user.unsupported_version": 3,
              "order.malformed_version": 3, "none.unmatched": 3}
    with harness.DemoStack(json.loads(harness.DEMO_CATALOG.read_text())) as stack:
        for _ in range(3):
            http1("POST", stack.url + "/register")
            http1("POST", stack.url + "/register", {"x-api-version": "9"})
            http1("POST", stack.url + "/order", {"x-api-version": "x"})
            http1("GET", stack.url + "/elsewhere")

        def counts():
            return {name: stack.envoy.meshver_requests(*name.split(".")) for name in wanted}

        harness.wait_for(lambda: all(counts()[name] >= count for name, count in wanted.items()), 10,
                         "the filter's counts in Envoy's stats")
        assert counts() == wanted


@pytest.mark.parametrize("path,headers,grpc_status,kind", [
    ("/acme.user.v9.UserService/Register", {}, "12", "unsupported-version"),
    ("/acme.user.v2.UserService/Register", {"x-api-version": "1"}, "3", "version-conflict"),
])
def test_grpc_clients_get_a_grpc_status(demo, path, headers, grpc_status, kind):
    """A gRPC client cannot read problem+json: it gets HTTP 200 with grpc-status and the detail."""
    before = upstream_requests(demo)
    answer = http2("POST", demo.url + path, {"content-type": "application/grpc", "te": "trailers", **headers})
    assert answer.status == 200
    assert answer.header("grpc-status") == grpc_status
    assert answer.header("meshver-problem-type") == f"urn:meshver:problem:{kind}"
    assert answer.header("api-supported-versions") == "1.4.0, 2.0.3, 2.1.0"
    assert "version" in urllib.parse.unquote(answer.header("grpc-message"))
    assert upstream_requests(demo) == before
