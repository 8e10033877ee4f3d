"""Checks of the harness itself: the example services, the config generator, the clients."""

import json

from harness import DEMO_CATALOG, Upstream, compiled_catalog, envoy_config, http1, raw_http1


def test_service_echoes_what_it_received():
    with Upstream("user", "2.1.0") as user:
        answer = http1("POST", user.url + "/register?a=1&b=%20", body="héllo",
                       headers=[("X-Tag", "a"), ("x-tag", "b")])
    assert answer.status == 200
    assert answer.header("content-type") == "application/json"
    echo = answer.json
    assert (echo["service"], echo["version"], echo["method"]) == ("user", "2.1.0", "POST")
    assert echo["path"] == "/register?a=1&b=%20"
    assert echo["headers"]["x-tag"] == "a, b"
    assert echo["body"] == "héllo"
    assert echo["result"] == {"registered": True}


def test_unknown_endpoint_is_404_with_the_echo():
    with Upstream("order", "1.2.0") as order:
        answer = http1("POST", order.url + "/register")
    assert answer.status == 404
    assert answer.json["error"] == "not found"
    assert answer.json["path"] == "/register"


def test_faults_change_at_runtime_but_spare_control_endpoints():
    with Upstream("user", "1.4.0") as user:
        assert http1("POST", user.url + "/__fault?fail_rate=1").json["fail_rate"] == 1.0
        assert http1("POST", user.url + "/login").status == 503
        assert http1("GET", user.url + "/healthz").status == 200
        http1("POST", user.url + "/__fault?fail_rate=0")
        assert http1("POST", user.url + "/login").status == 200


def test_order_checks_the_user_and_reports_a_failed_check():
    with Upstream("user", "1.4.0") as user, Upstream("order", "2.0.0") as bad_user:
        with Upstream("order", "1.2.0", extra_args=["--user-url", user.url]) as order:
            ok = http1("POST", order.url + "/order", {"x-user-id": "42"})
        with Upstream("order", "1.2.0", extra_args=["--user-url", bad_user.url]) as order:
            failed = http1("POST", order.url + "/order")
    assert ok.status == 200
    assert ok.json["user_check"]["version"] == "1.4.0"
    assert ok.json["user_check"]["headers"]["x-user-id"] == "42"
    assert failed.status == 502
    assert failed.json["user_check"]["status"] == 404


def test_raw_http1_sends_bytes_clients_refuse():
    with Upstream("user", "1.4.0") as user:
        answer = raw_http1(user.port, b"POST /login HTTP/1.1\r\nHost: x\r\n"
                                      b"x-api-version: \xff\xfe\r\nContent-Length: 0\r\n\r\n")
    assert answer.status == 200
    assert answer.json["headers"]["x-api-version"] == "\xff\xfe"  # latin-1 on the server


def test_config_routes_pinned_then_major_lines_then_catch_all():
    catalog = json.loads(DEMO_CATALOG.read_text())
    catalog["services"].append({"name": "solo", "match": {"path_prefixes": ["/solo"]}, "default_version": "3",
                                "deployments": [
        {"version": "3.0.0"}, {"version": "3.1.0"}, {"version": "3.2.0"}, {"version": "4.0.0"}]})
    compiled = compiled_catalog(catalog)
    deployments = [d["route"] for s in compiled["services"] for d in s["deployments"]]
    lines = {line["route"]: line for s in compiled["services"] for line in s["lines"]}
    config = envoy_config(catalog, 1, 2, {route: 3 for route in deployments})
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    keys = [r["match"]["headers"][0]["string_match"]["exact"] for r in routes[:-1]]
    assert keys == deployments + list(lines)
    assert list(lines) == ["user-v1", "user-v2", "order-v1", "order-v2", "solo-v3", "solo-v4"]
    rendered = {k: r["route"]["weighted_clusters"] for k, r in zip(keys, routes) if k in lines}
    assert rendered["user-v2"]["runtime_key_prefix"] == "routing.user-v2"
    weights = {k: [(c["name"], c["weight"]) for c in w["clusters"]] for k, w in rendered.items()}
    # Newest first, so sticky clients only ever move from old to new as the new weight grows;
    # the weights `check --json` reports for the line.
    for route, line in lines.items():
        assert weights[route] == list(reversed(line["weights"].items())), route
        assert sum(line["weights"].values()) == 100, line
    assert weights["user-v2"] == [("user-2.1.0", 10), ("user-2.0.3", 90)]
    # A line without weights is split evenly, the remainder to the oldest.
    assert weights["solo-v3"] == [("solo-3.2.0", 33), ("solo-3.1.0", 33), ("solo-3.0.0", 34)]
    assert routes[-1]["direct_response"]["status"] == 404
    wasm = hcm["http_filters"][0]["typed_config"]["config"]
    assert json.loads(wasm["configuration"]["value"]) == catalog

