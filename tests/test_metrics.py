"""The filter's labelled metrics as Prometheus reads them, and its decision in the access log.

Through the real Envoy, with the bootstrap `meshver render envoy` writes: its
`stats_config.stats_tags` turn the labels the filter encodes in its counters' names
(src/metrics.rs) into Prometheus labels on `/stats/prometheus`, parsed here with the Prometheus
project's own text parser. Each test runs a stack of its own, so that its counts are exact.
"""

import copy
import json
import random
import re

from prometheus_client.parser import text_string_to_metric_families

import harness
from harness import http1

JSON = {"content-type": "application/json"}
REQUESTS = "meshver_requests_total"
DEPRECATED = "meshver_deprecated_requests_total"
STICKY = "meshver_sticky_assignments_total"


def catalog():
    """The demo catalog, its order service changed so that every kind of answer is reachable:
    a version is required, 1.2.0 is past its sunset, and POST /order for 2 has a contract."""
    c = json.loads(harness.DEMO_CATALOG.read_text())
    order = next(s for s in c["services"] if s["name"] == "order")
    order["default_version"] = "reject"
    order["deployments"][0]["lifecycle"] = {"sunset": "2020-01-01"}
    order["data"] = {"max_body_bytes": 1024, "contracts": [
        {"version": "2", "path_prefix": "/order", "methods": ["POST"],
         "schema": {"type": "object", "required": ["item"]}}]}
    return c


def scrape(envoy):
    """{(sample name, ((label, value), …)): value} of the meshver_ metrics on /stats/prometheus."""
    answer = http1("GET", envoy.admin_url + "/stats/prometheus")
    assert answer.status == 200, answer.body
    series = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name.startswith("meshver_"):
                series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def requests(service, version, route, outcome, caller="none"):
    return (REQUESTS, tuple(sorted({"service": service, "version": version, "route": route,
                                    "outcome": outcome, "caller": caller}.items())))


def counted(series):
    """Only the series that have counted something (Envoy keeps a counter once defined)."""
    return {key: value for key, value in series.items() if value}


# The request mix of test_requests_are_labelled_in_prometheus, and the series it makes.
MIX_SERIES = {
    # The edge: no caller.
    requests("user", "none", "user-v1", "forwarded"): 3,
    requests("user", "2", "user-v2", "forwarded"): 2,
    requests("user", "2", "user-2.1.0", "forwarded"): 1,
    requests("user", "other", "none", "unsupported_version"): 1,
    requests("user", "other", "none", "malformed_version"): 1,
    requests("user", "other", "none", "version_conflict"): 1,
    requests("none", "none", "none", "unmatched"): 1,
    requests("order", "none", "none", "version_required"): 1,
    requests("order", "1", "none", "version_gone"): 1,
    # The body filter's outcomes, labelled as the header filter labelled the request.
    requests("order", "2", "order-v2", "forwarded"): 1,
    requests("order", "2", "order-v2", "contract_violation"): 1,
    requests("order", "2", "order-v2", "malformed_body"): 1,
    requests("order", "2", "order-v2", "body_too_large"): 1,
    # The forwarded order calls user through order 2.0.0's sidecar (its own identity, no
    # version: its requirement pins 2.1.0), then the user's inbound side (the stamped caller).
    requests("user", "none", "user-2.1.0", "forwarded", "order"): 1,
    requests("user", "2", "user-2.1.0", "forwarded", "order"): 1,
    # The inbound side, called directly.
    requests("user", "none", "none", "malformed_caller", "other"): 1,
    requests("user", "1", "none", "incompatible_caller", "order"): 1,
    # Order 2.0.0's sidecar asked for user 1.
    requests("user", "1", "none", "no_compatible_deployment", "order"): 1,
    (DEPRECATED, (("caller", "none"), ("service", "user"), ("version", "1"))): 3,
    (STICKY, (("route", "user-v2"), ("service", "user"))): 2,
}


def send_mix(stack):
    edge = stack.url
    inbound = f"http://127.0.0.1:{stack.inbound_port}"
    sidecar = f"http://127.0.0.1:{stack.sidecar_ports[stack.route('order', '2.0.0')]}"
    answers = []
    for _ in range(3):
        answers.append((200, http1("POST", edge + "/register")))
    for user in ("ann", "bob"):
        answers.append((200, http1("POST", edge + "/register", {"x-api-version": "2", "x-user-id": user})))
    answers += [
        (200, http1("POST", edge + "/v2.1/register")),
        (400, http1("POST", edge + "/register", {"x-api-version": "9"})),
        (400, http1("POST", edge + "/register", {"x-api-version": "x"})),
        (400, http1("POST", edge + "/v1/register", {"x-api-version": "2"})),
        (404, http1("GET", edge + "/elsewhere")),
        (400, http1("POST", edge + "/order")),
        (410, http1("POST", edge + "/order", {"x-api-version": "1"})),
        (200, http1("POST", edge + "/v2/order", JSON, '{"item": "book"}')),
        (422, http1("POST", edge + "/v2/order", JSON, "{}")),
        (400, http1("POST", edge + "/v2/order", JSON, "{")),
        (413, http1("POST", edge + "/v2/order", JSON, json.dumps({"item": "x" * 2000}))),
        (400, http1("POST", inbound + "/login", {"x-meshver-caller": "not an identity"})),
        (409, http1("POST", inbound + "/login", {"x-meshver-caller": "order/2.0.0", "x-api-version": "1"})),
        (503, http1("POST", sidecar + "/login", {"x-api-version": "1"})),
    ]
    for status, answer in answers:
        assert answer.status == status, (status, answer.status, answer.body[:300])


def test_requests_are_labelled_in_prometheus():
    """Each request counts once under service, requested version line, route key, outcome and
    caller; deprecated use and sticky assignments count beside it. Then 200 requests for random
    versions add counts to the series that exist, and no series."""
    with harness.DemoStack(catalog()) as stack:
        send_mix(stack)
        # Each worker hands its counts to Envoy once a second.
        harness.wait_for(lambda: counted(scrape(stack.envoy)) == MIX_SERIES, 10,
                         "the request mix's series in /stats/prometheus")
        before = scrape(stack.envoy)
        wasm_stats = [name for name in stack.envoy.stats() if name.startswith("wasmcustom.")]

        rng = random.Random(13)
        unsupported = malformed = 0
        for i in range(200):
            if i % 2:
                version = f"{rng.randrange(3, 10**9)}.{rng.randrange(100)}"
                answer = http1("POST", stack.url + f"/v{version}/register")
                unsupported += 1
            else:
                version = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz-_+") for _ in range(12))
                answer = http1("POST", stack.url + "/register", {"x-api-version": version})
                malformed += 1
            assert answer.status == 400, (version, answer.body)
        unsupported_key = requests("user", "other", "none", "unsupported_version")
        malformed_key = requests("user", "other", "none", "malformed_version")
        wanted = {**before, unsupported_key: before[unsupported_key] + unsupported,
                  malformed_key: before[malformed_key] + malformed}
        harness.wait_for(lambda: scrape(stack.envoy) == wanted, 10, "the random versions folded into version=other")
        assert [name for name in stack.envoy.stats() if name.startswith("wasmcustom.")] == wasm_stats


def test_the_decision_is_in_the_access_log():
    """The rendered access log prints each request's service, version, route key and outcome,
    read from what the filter leaves on the request (no host call): a forwarded request, the
    header filter's answer and the body filter's."""
    with harness.DemoStack(copy.deepcopy(catalog())) as stack:
        assert http1("POST", stack.url + "/v2/register", {"x-user-id": "ann"}).status == 200
        assert http1("POST", stack.url + "/register", {"x-api-version": "9"}).status == 400
        assert http1("POST", stack.url + "/v2/order", JSON, "{}").status == 422
        line = re.compile(r'^\[\S+\] edge "POST (?P<path>\S+) HTTP/1.1" (?P<status>\d+) service=(?P<service>\S+) '
                          r"version=(?P<version>\S+) route=(?P<route>\S+) outcome=(?P<outcome>\S+) "
                          r"upstream=(?P<upstream>\S+) \d+ms$")

        def logged():
            entries = [m.groupdict() for m in map(line.match, stack.envoy.output_lines()) if m]
            return entries if len(entries) == 3 else None

        forwarded, rejected, body = harness.wait_for(logged, 10, "three access log lines")
        assert forwarded == {"path": "/register", "status": "200", "service": "user", "version": "2",
                             "route": "user-v2", "outcome": "via_upstream",
                             "upstream": forwarded["upstream"]}
        assert forwarded["upstream"] in ("user-2.0.3", "user-2.1.0")
        assert rejected == {"path": "/register", "status": "400", "service": "-", "version": "9",
                            "route": "none", "outcome": "meshver_unsupported_version{user,9}", "upstream": "-"}
        assert body == {"path": "/order", "status": "422", "service": "order", "version": "2",
                        "route": "order-v2", "outcome": "meshver_contract_violation{order,2}",
                        "upstream": "order-2.0.0"}
