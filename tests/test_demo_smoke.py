"""Smoke tests of the demo stack: the contract `make demo` advertises, through real Envoy."""

from harness import http1, http2, raw_http1


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
