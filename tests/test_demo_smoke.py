"""Smoke tests of the demo stack: the contract `make demo` advertises, through real Envoy.

The demo's Data lines run through both of its Envoys: the `demo` stack (examples/catalog.json,
user 1.4.0 deployed) and `served`, the second edge (examples/catalog-served.json: 1.4.0
switched off, user 1 served by the same 2.x upstreams). The lines are read back from the
TRY text examples/demo.py prints, so what it advertises is what runs here.
"""

import importlib.util
import json
import shlex

import pytest

import harness
from harness import http1, http2, raw_http1

PROTOCOLS = {"http1": http1, "http2": http2}


def load_demo_script():
    spec = importlib.util.spec_from_file_location("meshver_demo", harness.ROOT / "examples/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo_py = load_demo_script()


def version_of(answer):
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json["version"]


def test_no_version_goes_to_the_default_line(demo):
    assert version_of(http1("POST", demo.url + "/register")).startswith("1.")


def test_header_version_picks_the_major_line(demo):
    assert version_of(http1("POST", demo.url + "/register", {"x-api-version": "2"})).startswith("2.")


def test_http2_is_routed_the_same(demo):
    assert version_of(http2("POST", demo.url + "/register", {"x-api-version": "2"})).startswith("2.")


def test_unknown_version_is_a_problem(demo):
    answer = http1("POST", demo.url + "/register", {"x-api-version": "3"})
    assert answer.status == 400
    assert answer.header("content-type").startswith("application/problem+json")


def test_upstream_never_sees_the_route_key(demo):
    answer = http1("POST", demo.url + "/register", {"x-api-version": "2"})
    assert "x-meshver-route" not in answer.json["headers"]


def test_order_checks_the_user_through_the_mesh(demo):
    answer = http1("POST", demo.url + "/order", {"x-user-id": "42"})
    assert version_of(answer).startswith("1.")
    assert answer.json["user_check"]["service"] == "user"


def test_non_utf8_header_does_not_break_the_filter(demo):
    raw = b"POST /register HTTP/1.1\r\nHost: x\r\nx-api-version: \xff\xfe\r\nContent-Length: 0\r\n\r\n"
    assert raw_http1(demo.envoy.port, raw).status < 500
    # The VM must still serve later requests (the `demo` fixture also checks the log).
    assert version_of(http1("POST", demo.url + "/register")).startswith("1.")


# --- Data: a user 1 client after 1.4.0 is switched off ----------------------------------------

@pytest.fixture(scope="module")
def served(demo):
    """The demo's second edge: its own Envoy on examples/catalog-served.json, routing to the
    `demo` stack's 2.x upstreams (as `make demo` does)."""
    catalog = json.loads(demo_py.SERVED_CATALOG.read_text())
    with harness.DemoStack(catalog, shared=demo.upstreams, envoy_name="envoy-served") as stack:
        yield stack
    stack.envoy.check_no_wasm_critical()


def test_check_accepts_the_second_edges_catalog_with_no_findings():
    """No errors, and no compatibility finding (2.1's contract accepts what 2's accepted)."""
    path = demo_py.SERVED_CATALOG.relative_to(harness.ROOT)
    result = harness.meshver("check", path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == f"{path}: ok, 1 services, 2 deployments\n"


def printed_data_calls():
    """Each curl line of the TRY text's Data section, read back as (port, path, headers, body)."""
    section = demo_py.TRY.split("\nData:\n", 1)[1].split("\n\n", 1)[0]
    calls = []
    for line in section.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[:2] == ["curl", "-s"] and words[2].startswith("localhost:"), line
        host, _, path = words[2].partition("/")
        options = dict(zip(words[3::2], words[4::2], strict=True))
        assert set(options) == {"-H", "-d"}, line
        name, _, value = options["-H"].partition(": ")
        calls.append((int(host.split(":")[1]), "/" + path, {name: value}, options["-d"]))
    return calls


def test_the_printed_data_lines_are_the_ones_tested():
    json_call = lambda call: (call.port, call.path, {"content-type": "application/json"}, call.body)
    assert printed_data_calls() == [json_call(call) for call in demo_py.DATA_CALLS]
    # Every line is checked by one of the tests below.
    assert {call.answer for call in demo_py.DATA_CALLS} == {"1.x", 422, 400}


def calls_answered(answer):
    return [pytest.param(call, id=f":{call.port}{call.path}") for call in demo_py.DATA_CALLS
            if call.answer == answer]


def send(call, protocol, demo, served):
    stack = {demo_py.LISTENER_PORT: demo, demo_py.SERVED_PORT: served}[call.port]
    return PROTOCOLS[protocol]("POST", stack.url + call.path, {"content-type": "application/json"}, call.body)


def in_2x_shape(v1_body):
    """A user 1 body as 2.x takes it (the change 1 -> 2 of examples/catalog-served.json), in the
    bytes the filter writes: compact, members in key order."""
    upgraded = {"credentials": {key: v1_body[key] for key in ("email", "password") if key in v1_body}}
    if "name" in v1_body:
        upgraded["full_name"] = v1_body["name"]
    return json.dumps(upgraded, separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("call", calls_answered("1.x"))
def test_a_user_1_client_keeps_its_shape_when_2x_serves_it(demo, served, call, protocol):
    """On :10000, 1.4.0 gets the client's bytes; on :10002, a 2.x deployment gets them in its
    own shape and is told 2. Either way the client's answer is in 1's shape."""
    answer = send(call, protocol, demo, served)
    assert answer.status == 200, (answer.status, answer.body)
    seen = answer.json
    if call.port == demo_py.SERVED_PORT:
        assert seen["version"] in ("2.0.3", "2.1.0") and seen["headers"]["x-api-version"] == "2", seen
        assert seen["body"] == in_2x_shape(json.loads(call.body)), seen["body"]
    else:
        assert seen["version"] == "1.4.0" and seen["headers"]["x-api-version"] == "1", seen
        assert seen["body"] == call.body
    v1_body = json.loads(call.body)
    account = {key: v1_body[key] for key in ("name", "email") if key in v1_body}
    if call.path.endswith("/register"):
        assert seen["result"] == {"registered": True, "account": account}, seen["result"]
    else:
        assert set(seen["result"]) == {"token", "account"}, seen["result"]
        assert seen["result"]["account"] == account and seen["result"]["token"].startswith("token-")


def problem_of(answer, status, kind):
    assert answer.status == status, (answer.status, answer.body)
    assert answer.header("content-type").startswith("application/problem+json")
    assert answer.json["type"] == f"urn:meshver:problem:{kind}", answer.json
    return answer.json


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("call", calls_answered(422))
def test_a_body_that_breaks_the_2_1_contract_is_422_naming_each_field(demo, served, call, protocol):
    problem = problem_of(send(call, protocol, demo, served), 422, "contract-violation")
    assert problem["requested_version"] == "2.1"
    pointers = sorted(error["pointer"] for error in problem["errors"])
    assert pointers == ["/credentials/email", "/credentials/password", "/full_name"], problem


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("call", calls_answered(400))
def test_a_malformed_body_is_400(demo, served, call, protocol):
    problem_of(send(call, protocol, demo, served), 400, "malformed-body")
