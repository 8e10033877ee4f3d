"""No request content may trap the VM: a stream of hostile requests, then normal requests
on fresh connections (spread over both workers) must all be served correctly."""

import json

from harness import http1, http2, raw_http1

LONG = b"9" * 20000


def hostile_requests():
    """Raw HTTP/1.1 requests that normal clients would refuse to send."""
    def request(target, *headers):
        lines = [b"POST " + target + b" HTTP/1.1", b"Host: localhost", b"Content-Length: 0", *headers]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    bad_values = [b"\xff\xfe", b"\xc3\x28", b"2\x80", b"v\xe2\x82", b" " * 100, LONG, b"2" + b".1" * 3000]
    for value in bad_values:
        yield request(b"/register", b"x-api-version: " + value)
        yield request(b"/register", b"accept: application/vnd.acme.v" + value + b"+json")
        yield request(b"/register", b"x-meshver-route: " + value)
        yield request(b"/register", b"content-type: application/grpc", b"cookie: " + value)
        yield request(b"/register", b"x-api-version: 2", b"x-api-version: " + value)
        yield request(b"/register", b"x-user-id: " + value, b":weird: x")
    for target in [b"/register?api-version=%ff%fe", b"/v" + LONG + b"/register", b"/register_v" + LONG,
                   b"/register?" + b"api-version=2&" * 2000, b"//", b"/%00", b"*", b"http://x/register",
                   b"/acme.user.v" + LONG + b".S/M", b"/v2/register_v2.1", b"/register?&&&==&api-version"]:
        yield request(target)
    yield b"\xff\xfe\r\n\r\n"
    yield b"POST /register HTTP/1.1\r\nHost: x\r\nx-api-version: 2\r\nx-api-version: 2\r\n" * 3 + b"\r\n"


def test_hostile_stream_leaves_every_worker_healthy(demo):
    statuses = {}
    count = 0
    for _ in range(4):
        for raw in hostile_requests():
            count += 1
            try:
                status = raw_http1(demo.envoy.port, raw).status
            except (ConnectionError, ValueError, IndexError, OSError):
                status = "closed"  # Envoy may refuse a broken request by closing the connection
            statuses[status] = statuses.get(status, 0) + 1
            assert status not in (500, 502, 503), f"hostile request #{count} got {status}: {raw[:120]!r}"
    assert count >= 200, count
    assert statuses.get(400, 0) > 50, statuses  # the filter's own answers, not only Envoy's

    # Each request opens a new connection, so both workers are exercised.
    for i in range(60):
        send = http1 if i % 2 else http2
        answer = send("POST", demo.url + "/v2.1/register?k=1", {"x-meshver-route": "user-1.4.0"})
        assert answer.status == 200, answer.body
        assert (answer.json["version"], answer.json["path"]) == ("2.1.0", "/register?k=1")
    assert not demo.envoy.critical_lines(), demo.envoy.critical_lines()
    stats = demo.envoy.stats()
    assert not {k: v for k, v in stats.items() if "wasm" in k and ("fail" in k or "crash" in k) and v}, stats


def test_non_utf8_version_is_a_precise_400(demo):
    raw = b"POST /register HTTP/1.1\r\nHost: x\r\nx-api-version: 2\xff\r\nContent-Length: 0\r\n\r\n"
    answer = raw_http1(demo.envoy.port, raw)
    assert answer.status == 400
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:malformed-version"
    assert "2\ufffd" in problem["detail"], problem  # shown, replaced, never trusted


def test_oversized_values_are_refused_not_echoed(demo):
    answer = http1("POST", demo.url + "/register", {"x-api-version": "1" * 5000})
    assert answer.status == 400
    assert len(answer.body) < 2000, len(answer.body)
