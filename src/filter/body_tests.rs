//! The body half through the in-memory host: the header filter marks, the body filter checks,
//! upgrades and walks back; anything else passes byte for byte.

use super::body::{BodyExchange, Step, BODY_HEADER};
use super::fake::FakeHost;
use super::{on_request_headers, Verdict};
use crate::config::{self, Catalog};

const CATALOG: &str = r#"{"services":[{"name":"user","match":{"path_prefixes":["/register"]},
    "default_version":"2","deployments":[{"version":"2.0.3"},{"version":"2.1.0"}],
    "data":{"max_body_bytes":64,"served_by_successor":["1"],
        "changes":[{"from":"1","to":"2",
            "request":[{"op":"rename","from":"/name","to":"/profile/full_name"}],
            "response":[{"op":"map","path":"/status","values":{"ACTIVE":"active"}}]}],
        "contracts":[{"version":"2.1","path_prefix":"/register","schema":{"type":"object","required":["email"]}}]}}]}"#;

fn catalog() -> Catalog {
    config::load(CATALOG.as_bytes()).unwrap()
}

/// The header filter, then the body filter's request side, on one host.
fn request(c: &Catalog, headers: &[(&str, &[u8])], body: &[u8]) -> (FakeHost, Option<BodyExchange>, Step) {
    let mut host = FakeHost::new(headers);
    assert_eq!(on_request_headers(&mut host, c), Verdict::Continue);
    let (exchange, mut step) = BodyExchange::start(&mut host, c, body.is_empty());
    host.request_body = body.to_vec();
    if let (Some(exchange), false) = (&exchange, body.is_empty()) {
        let mut exchange = exchange.clone();
        step = exchange.on_request_body(&mut host, c, body.len(), true);
        return (host, Some(exchange), step);
    }
    (host, exchange, step)
}

const JSON: (&str, &[u8]) = ("content-type", b"application/json");

#[test]
fn a_version_served_by_its_successor_is_upgraded_and_walked_back() {
    let c = catalog();
    let (mut host, exchange, step) = request(
        &c,
        &[(":method", b"POST"), (":path", b"/v1/register"), JSON, ("content-length", b"14")],
        br#"{"name":"Ann"}"#,
    );
    assert_eq!(step, Step::Continue);
    assert_eq!(host.header("x-api-version").as_deref(), Some("2"), "the upstream is told what it is sent");
    assert_eq!(host.header(BODY_HEADER), None, "the mark never reaches the upstream");
    assert_eq!(host.request_body, br#"{"profile":{"full_name":"Ann"}}"#);
    assert!(host.removed.contains(&"content-length".to_owned()));

    let mut exchange = exchange.unwrap();
    host.response_headers = vec![("content-type".into(), b"application/json".to_vec())];
    host.response_body = br#"{"status":"ACTIVE"}"#.to_vec();
    assert_eq!(exchange.on_response_headers(&mut host, &c, false), Step::Continue);
    let size = host.response_body.len();
    assert_eq!(exchange.on_response_body(&mut host, &c, size, true), Step::Continue);
    assert_eq!(host.response_body, br#"{"status":"active"}"#);
}

#[test]
fn a_header_the_request_does_not_have_is_not_removed() {
    // Removing costs a host call (in Envoy as much as a set); the upstream gets the body chunked
    // either way.
    let c = catalog();
    let (host, exchange, _) =
        request(&c, &[(":method", b"POST"), (":path", b"/v1/register"), JSON], br#"{"name":"Ann"}"#);
    assert!(exchange.is_some());
    assert_eq!(host.request_body, br#"{"profile":{"full_name":"Ann"}}"#);
    assert!(
        !host.removed.iter().any(|name| name == "content-length" || name == "accept-encoding"),
        "{:?}",
        host.removed
    );
}

#[test]
fn refusals_name_what_is_wrong() {
    let c = catalog();
    type Case<'a> = (&'a str, &'a [u8], u32, &'a str);
    let cases: &[Case] = &[
        ("2.1", br#"{"name":"x"}"#, 422, "contract-violation"),
        ("1", br#"{"name": "#, 400, "malformed-body"),
        ("1", &[b' '; 65], 413, "body-too-large"),
    ];
    for (version, body, status, kind) in cases {
        let (host, _, step) = request(
            &c,
            &[(":method", b"POST"), (":path", b"/register"), ("x-api-version", version.as_bytes()), JSON],
            body,
        );
        assert_eq!(step, Step::Answered, "{version}");
        let answer = host.answer.as_ref().unwrap();
        assert_eq!(answer.status, *status);
        let problem: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(problem["type"], format!("urn:meshver:problem:{kind}"));
        if *status == 422 {
            assert_eq!(problem["errors"], serde_json::json!([{"pointer": "/email", "detail": "is required"}]));
        }
    }
}

#[test]
fn other_bodies_pass_byte_for_byte() {
    let c = catalog();
    for extra in [("content-type", &b"text/plain"[..]), ("content-encoding", b"gzip")] {
        let mut headers: Vec<(&str, &[u8])> = vec![(":method", b"POST"), (":path", b"/v1/register"), JSON];
        headers.retain(|(n, _)| *n != extra.0);
        headers.push(extra);
        let (host, _, step) = request(&c, &headers, b"{\"name\":\"Ann\"}");
        assert_eq!(step, Step::Continue);
        assert_eq!(host.request_body, b"{\"name\":\"Ann\"}", "{extra:?}");
    }
    // No change and no contract for 2.0: no mark, no body work.
    let (host, exchange, _) =
        request(&c, &[(":method", b"POST"), (":path", b"/register"), ("x-api-version", b"2.0"), JSON], b"{}");
    assert!(exchange.is_none() && host.header(BODY_HEADER).is_none());
}

#[test]
fn the_body_filter_counts_as_the_header_filter_labelled() {
    use crate::metrics::{Family, Label};
    let c = catalog();
    let (host, _, step) = request(&c, &[(":method", b"POST"), (":path", b"/v1/register"), JSON], br#"{"name":"Ann"}"#);
    assert_eq!(step, Step::Continue);
    let names: Vec<String> = host.counted.iter().map(|s| s.stat_name(&c)).collect();
    // Version 1 is served by its successor: a line of its own in the labels, on the 2.x route.
    assert_eq!(names, ["meshver_requests_total;service=user;version=1;route=user-v2;outcome=forwarded;caller=none"]);

    let (host, _, step) = request(&c, &[(":method", b"POST"), (":path", b"/v2.1/register"), JSON], b"{}");
    assert_eq!(step, Step::Answered);
    let requests: Vec<_> = host.counted.iter().filter(|s| s.family == Family::Requests).collect();
    assert_eq!(requests.len(), 1, "counted once, by the body filter");
    let values: Vec<String> = Label::ALL.iter().map(|l| requests[0].value(&c, *l).into_owned()).collect();
    assert_eq!(values, ["user", "2", "user-2.1.0", "contract_violation", "none"]);
}
