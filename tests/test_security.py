"""Claims of SECURITY.md that no other test proves: how the filter and the rendered Envoy config
answer inputs built to get around version policy. The second demo catalog (user 1 served by 2.x,
contracts for 2 and 2.1 on POST /register) runs behind the real Envoy."""

import json

import httpx
import pytest

import harness

SERVED_CATALOG = harness.ROOT / "examples/catalog-served.json"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack():
    with harness.DemoStack(json.loads(SERVED_CATALOG.read_text())) as stack:
        yield stack
    stack.envoy.check_no_wasm_critical()


def upstream_requests(stack):
    stats = stack.envoy.stats()
    return sum(stats.get(f"cluster.{route}.upstream_rq_total", 0) for route in stack.upstreams)


@pytest.mark.parametrize("version", ["1", "2.1"])
def test_a_body_nested_deeper_than_128_levels_is_a_400(stack, version):
    """The JSON reader stops at 128 levels (serde_json's recursion limit): a deeper body is
    malformed, it never exhausts the VM's stack; one level less is read and checked."""
    deep = "[" * 200 + "]" * 200
    answer = harness.http1("POST", f"{stack.url}/v{version}/register", JSON, deep)
    assert answer.status == 400, answer.body
    assert answer.json["type"] == "urn:meshver:problem:malformed-body"
    assert "recursion limit" in answer.json["detail"]
    nested = '{"a":' * 127 + "1" + "}" * 127
    checked = harness.http1("POST", f"{stack.url}/v2.1/register", JSON, nested)
    assert checked.status == 422 and checked.json["type"] == "urn:meshver:problem:contract-violation"


def test_headers_over_envoys_limit_never_reach_the_filter(stack):
    """Envoy's own header limit (60 KiB by default; meshver renders none of its own) refuses a
    larger request before any filter runs: 431 over HTTP/1.1, a reset stream over HTTP/2. Below
    it, the filter reads the header map as usual."""
    within = harness.http1("POST", stack.url + "/register", {"x-api-version": "2", "x-pad": "a" * 50_000})
    assert within.status == 200 and within.json["version"] in ("2.0.3", "2.1.0"), within.body[:200]
    over = harness.http1("POST", stack.url + "/register", {"x-api-version": "2", "x-pad": "a" * 70_000})
    assert over.status == 431 and over.header("server") == "envoy", over
    with pytest.raises(httpx.RemoteProtocolError):
        harness.http2("POST", stack.url + "/register", {"x-api-version": "2", "x-pad": "a" * 70_000})


@pytest.mark.parametrize("path", ["/%72egister", "//register", "/./register", "/v2/../register", "/REGISTER"])
def test_a_path_no_service_matches_reaches_no_deployment(stack, path):
    """The filter matches path prefixes bytewise, as Envoy's routes do. A path spelled so that no
    service matches passes the filter undecided, with no route key, and the rendered routes send
    only route keys to deployments: it gets the rendered 404, and no upstream sees it."""
    before = upstream_requests(stack)
    answer = harness.http1("POST", stack.url + path, {"x-api-version": "2", "x-meshver-route": "user-2.0.3"})
    assert answer.status == 404 and answer.json["title"] == "no service matched", answer.body
    assert upstream_requests(stack) == before
