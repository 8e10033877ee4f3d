"""Part 2 through the real Envoy: minor-aware routing in a canary, caller requirements and
callee acceptance across separate listeners, deprecation and sunset."""

import copy
import json

import pytest

import harness
from harness import DemoStack, http1, http2

CATALOG = json.loads(harness.DEMO_CATALOG.read_text())


def cluster_requests(envoy, cluster):
    return envoy.stats().get(f"cluster.{cluster}.upstream_rq_total", 0)


def test_pinned_requests_never_reach_an_older_minor_in_a_canary(demo):
    """user 2.0.3 / 2.1.0 split 90/10: requests for 2.1 all go to 2.1.0, over hundreds."""
    before = cluster_requests(demo.envoy, demo.route("user", "2.0.3"))
    for i in range(300):
        send = http1 if i % 3 else http2
        headers = {"x-api-version": "2.1"} if i % 2 else {"accept": "application/vnd.acme.v2.1+json"}
        answer = send("POST", demo.url + "/login", headers)
        assert answer.json["version"] == "2.1.0", answer.json
    assert cluster_requests(demo.envoy, demo.route("user", "2.0.3")) == before
    # Unpinned 2.x requests still go by the mesh's weights, to both (asked until both answered).
    seen = set()

    def both_answered():
        seen.add(http1("POST", demo.url + "/login", {"x-api-version": "2"}).json["version"])
        return seen == {"2.0.3", "2.1.0"}

    harness.wait_for(both_answered, 30, "unpinned 2.x requests reaching both 2.x deployments", interval=0)


def test_order_2_reaches_only_user_2_1_through_its_sidecar(demo):
    """order 2.0.0 requires user >=2.1: its sidecar never sends it to 2.0.3, whatever the weights."""
    for _ in range(100):
        answer = http1("POST", demo.url + "/v2/order")
        assert answer.status == 200, answer.body
        assert answer.json["version"] == "2.0.0"
        check = answer.json["user_check"]
        assert check["version"] == "2.1.0", check
        assert check["headers"]["x-meshver-caller"] == "order/2.0.0"


def test_order_1_reaches_user_1(demo):
    answer = http1("POST", demo.url + "/order")
    assert (answer.json["version"], answer.json["user_check"]["version"]) == ("1.2.0", "1.4.0")
    assert answer.json["user_check"]["headers"]["x-meshver-caller"] == "order/1.2.0"


@pytest.mark.parametrize("send", [http1, http2])
def test_no_compatible_deployment_is_503_at_the_callers_sidecar(demo, send):
    sidecar = f"http://127.0.0.1:{demo.sidecar_ports[demo.route('order', '2.0.0')]}"
    users = [demo.route("user", v) for v in ("1.4.0", "2.0.3", "2.1.0")]
    before = sum(cluster_requests(demo.envoy, route) for route in users)
    answer = send("POST", sidecar + "/login", {"x-api-version": "1"})
    assert answer.status == 503
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:no-compatible-deployment"
    assert problem["required_range"] == ">=2.1, <3"
    assert problem["caller"] == "order/2.0.0"
    assert problem["supported_versions"] == ["1.4.0", "2.0.3", "2.1.0"]
    assert "1.4.0" in problem["detail"] and ">=2.1, <3" in problem["detail"]
    assert sum(cluster_requests(demo.envoy, route) for route in users) == before


def test_edge_clients_cannot_claim_to_be_a_caller(demo):
    """Only the inbound listener trusts stamped identities; the edge removes them."""
    answer = http1("POST", demo.url + "/login", {"x-meshver-caller": "order/2.0.0", "x-api-version": "1"})
    assert answer.status == 200 and answer.json["version"] == "1.4.0"
    assert "x-meshver-caller" not in answer.json["headers"]


@pytest.fixture(scope="module")
def callee_with_stale_caller():
    """A caller whose copy of the catalog does not know that user 1.4.0 refuses order 2.x:
    the callee's own listener must refuse the call, so nothing reaches user 1.4.0."""
    stale = copy.deepcopy(CATALOG)
    for deployment in stale["services"][0]["deployments"]:
        deployment.pop("accepts", None)
    for deployment in stale["services"][1]["deployments"]:
        deployment.pop("requires", None)
    with DemoStack(CATALOG) as stack:
        caller_port = harness.free_port()
        caller = {"name": "caller", "port": caller_port, "forward_to": stack.inbound_port,
                  "catalog": {**stale, "caller": {"service": "order", "version": "2.0.0"}}}
        config = harness.envoy_config(CATALOG, harness.free_port(), harness.free_port(),
                                      {n: u.port for n, u in stack.upstreams.items()}, extra_listeners=[caller])
        with harness.Envoy(config, name="caller-envoy") as caller_envoy:
            yield stack, f"http://127.0.0.1:{caller_port}", caller_envoy
        caller_envoy.check_no_wasm_critical()
    stack.envoy.check_no_wasm_critical()


@pytest.mark.parametrize("send", [http1, http2])
def test_callee_refuses_an_incompatible_caller_with_409(callee_with_stale_caller, send):
    stack, caller_url, _ = callee_with_stale_caller
    before = cluster_requests(stack.envoy, stack.route("user", "1.4.0"))
    answer = send("POST", caller_url + "/login", {"x-api-version": "1"})
    assert answer.status == 409, answer.body
    assert answer.header("content-type") == "application/problem+json"
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:incompatible-caller"
    assert problem["caller"] == "order/2.0.0"
    assert problem["refused_by"] == [{"version": "1.4.0", "accepts": "<2"}]
    assert "user 1.4.0 accepts order <2" in problem["detail"]
    assert cluster_requests(stack.envoy, stack.route("user", "1.4.0")) == before
    # The same caller asking for what the callee accepts goes through, identity passed on.
    ok = send("POST", caller_url + "/login", {"x-api-version": "2.1"})
    assert ok.status == 200 and ok.json["version"] == "2.1.0"
    assert ok.json["headers"]["x-meshver-caller"] == "order/2.0.0"


def test_deprecated_versions_announce_their_end(demo):
    old = http1("POST", demo.url + "/login")
    assert old.json["version"] == "1.4.0"
    assert old.header("deprecation") == "@1767225600"  # 2026-01-01T00:00:00Z
    assert old.header("sunset") == "Wed, 30 Jun 2027 00:00:00 GMT"
    assert old.header("link") == '<https://api.example.com/docs/user/v2>; rel="successor-version"'
    new = http2("POST", demo.url + "/login", {"x-api-version": "2"})
    assert new.status == 200
    assert new.header("deprecation") is None and new.header("sunset") is None


@pytest.fixture(scope="module")
def sunset_stack():
    """1.x past its sunset (the proxy's clock decides); 2.0.3 deprecated within a live line."""
    catalog = copy.deepcopy(CATALOG)
    user = catalog["services"][0]
    user["lines"]["1"]["lifecycle"].update(deprecated="2001-01-01", sunset="2001-06-30T12:00:00Z")
    user["deployments"][1]["lifecycle"] = {"deprecated": "2026-03-01", "sunset": "2099-01-01"}
    user["deployments"][1]["weight"], user["deployments"][2]["weight"] = 50, 50
    with DemoStack(catalog) as stack:
        yield stack
    stack.envoy.check_no_wasm_critical()


def test_after_sunset_the_answer_is_410_naming_the_successor(sunset_stack):
    before = cluster_requests(sunset_stack.envoy, sunset_stack.route("user", "1.4.0"))
    answer = http1("POST", sunset_stack.url + "/login")
    assert answer.status == 410
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:version-gone"
    assert problem["successor"] == "2"
    assert "sunset" in problem["detail"] and "Move to version 2" in problem["detail"]
    assert cluster_requests(sunset_stack.envoy, sunset_stack.route("user", "1.4.0")) == before


def test_lifecycle_headers_follow_the_deployment_the_mesh_picked(sunset_stack):
    """A line route: Envoy picks 2.0.3 or 2.1.0; only 2.0.3's answers carry its deprecation."""
    seen = set()
    for _ in range(60):
        answer = http1("POST", sunset_stack.url + "/login", {"x-api-version": "2"})
        version = answer.json["version"]
        seen.add(version)
        if version == "2.0.3":
            assert answer.header("deprecation") == "@1772323200"
            assert answer.header("sunset") == "Thu, 01 Jan 2099 00:00:00 GMT"
        else:
            assert answer.header("deprecation") is None, answer.headers
    assert seen == {"2.0.3", "2.1.0"}
