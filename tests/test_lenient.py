"""Real clients, read leniently, through the real Envoy over HTTP/1.1 and HTTP/2: Accept as
browsers and HTTP libraries send it (RFC 9110 content negotiation: the served version the
client weighs most, q=0 never, 406 when none), and percent-encoded query values
(docs/reference.md, "The query and Accept sources"). src/filter/tests.rs runs the same rows
natively."""

import json

import pytest

from harness import http1, http2
from test_filter import upstream_requests

PROTOCOLS = {"http1": http1, "http2": http2}
V2_LINE = {"2.0.3", "2.1.0"}
SUPPORTED = ["1.4.0", "2.0.3", "2.1.0"]

# (Accept lines as the client sends them, versions that may answer, x-api-version the upstream sees)
NEGOTIATED = [
    # Browsers and HTTP libraries name no version: the default, the 1.x line.
    (["text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"], {"1.4.0"}, "1"),
    (["*/*"], {"1.4.0"}, "1"),
    (["application/json, text/plain, */*"], {"1.4.0"}, "1"),
    # The version the client weighs most among those served.
    (["application/vnd.acme.v2+json; q=0.5, application/vnd.acme.v1+json"], {"1.4.0"}, "1"),
    (["application/vnd.acme.v3+json, application/vnd.acme.v2.1+json;q=0.9, */*;q=0.1"], {"2.1.0"}, "2.1"),
    (["application/json; version=1; q=0.2, application/json; version=2; q=0.8"], V2_LINE, "2"),
    # Equal weights keep the order sent; q=0 is never taken.
    (["application/vnd.acme.v2+json, application/vnd.acme.v1+json"], V2_LINE, "2"),
    (["application/vnd.acme.v2+json;q=0, application/vnd.acme.v1+json;q=0.1"], {"1.4.0"}, "1"),
    # Two Accept lines are one list.
    (["application/vnd.acme.v1+json;q=0.4", "application/vnd.acme.v2.1+json;q=0.6"], {"2.1.0"}, "2.1"),
]

# (Accept lines, the answer's acceptable_versions): nothing the client accepts is served.
NOT_ACCEPTABLE = [
    (["application/vnd.acme.v3+json"], ["3"]),
    (["application/vnd.acme.v3+json, application/vnd.acme.v2.2+json;q=0.5, */*;q=0.1"], ["3", "2.2"]),
    (["application/vnd.acme.v1+json;q=0"], []),
]

# (query, versions that may answer, path the upstream sees, x-api-version the upstream sees)
DECODED = [
    ("api-version=2%2E1", {"2.1.0"}, "/register", "2.1"),
    # A client that escapes every byte.
    ("%61%70%69%2D%76%65%72%73%69%6F%6E=%32%2E%31", {"2.1.0"}, "/register", "2.1"),
    # The other parameters reach the upstream as sent.
    ("api%2Dversion=2&q=a%20b+c", V2_LINE, "/register?q=a%20b+c", "2"),
    # `+` is a space (Python's urlencode({"api-version": " 2.1"})), trimmed like a header's.
    ("api-version=+2.1", {"2.1.0"}, "/register", "2.1"),
]

# (query or Accept line, what the 400's detail names)
UNREADABLE = [
    ({"query": "api-version=2%G1"}, ['"2%G1"', '"%G1"', "percent-decoded"]),
    ({"query": "api-version=2%"}, ['"2%"', '"%"']),
    ({"query": "api-version=2%2B1"}, ['"2%2B1"', "not a version"]),
    ({"accept": "application/vnd.acme.v2+json;q=.5"}, ['"v2"', 'q=".5"', "not a q-value"]),
]


def accept_lines(lines):
    return [("accept", line) for line in lines]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("lines,versions,version_header", NEGOTIATED, ids=[" | ".join(c[0]) for c in NEGOTIATED])
def test_accept_picks_the_preferred_served_version(demo, protocol, lines, versions, version_header):
    answer = PROTOCOLS[protocol]("POST", demo.url + "/register", accept_lines(lines))
    assert answer.status == 200, answer.body
    seen = answer.json
    assert seen["version"] in versions
    assert seen["headers"]["x-api-version"] == version_header
    # Accept itself goes on as sent (the upstream echo joins repeated lines).
    assert seen["headers"]["accept"] in (", ".join(lines), ",".join(lines))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("lines,acceptable", NOT_ACCEPTABLE, ids=[" | ".join(c[0]) for c in NOT_ACCEPTABLE])
def test_nothing_acceptable_is_406(demo, protocol, lines, acceptable):
    before = upstream_requests(demo)
    answer = PROTOCOLS[protocol]("POST", demo.url + "/register", accept_lines(lines))
    assert answer.status == 406
    assert answer.header("content-type") == "application/problem+json"
    assert answer.header("api-supported-versions") == ", ".join(SUPPORTED)
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:not-acceptable"
    assert (problem["status"], problem["title"]) == (406, "No acceptable API version")
    assert problem["acceptable_versions"] == acceptable
    assert problem["supported_versions"] == SUPPORTED
    assert "Accept header" in problem["detail"]
    assert upstream_requests(demo) == before, "a refused request reached an upstream"


def test_a_library_default_accept_gets_the_default(demo):
    """httpx sends `Accept: */*` unless told otherwise, like curl and Python requests."""
    answer = http2("POST", demo.url + "/register")
    assert answer.json["headers"]["accept"] == "*/*"
    assert (answer.json["version"], answer.json["headers"]["x-api-version"]) == ("1.4.0", "1")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("query,versions,upstream_path,version_header", DECODED, ids=[c[0] for c in DECODED])
def test_query_values_are_percent_decoded(demo, protocol, query, versions, upstream_path, version_header):
    answer = PROTOCOLS[protocol]("POST", f"{demo.url}/register?{query}")
    assert answer.status == 200, answer.body
    seen = answer.json
    assert seen["version"] in versions
    assert (seen["path"], seen["headers"]["x-api-version"]) == (upstream_path, version_header)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("sent,named", UNREADABLE, ids=[str(c[0]) for c in UNREADABLE])
def test_unreadable_values_are_a_precise_400(demo, protocol, sent, named):
    before = upstream_requests(demo)
    url = demo.url + "/register" + (f"?{sent['query']}" if "query" in sent else "")
    headers = {"accept": sent["accept"]} if "accept" in sent else {}
    answer = PROTOCOLS[protocol]("POST", url, headers)
    assert answer.status == 400
    assert answer.header("content-type") == "application/problem+json"
    problem = json.loads(answer.body)
    assert problem["type"] == "urn:meshver:problem:malformed-version"
    assert all(word in problem["detail"] for word in named), problem["detail"]
    assert upstream_requests(demo) == before, "a refused request reached an upstream"

