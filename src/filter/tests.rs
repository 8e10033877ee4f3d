//! The whole request path through the in-memory host, row by row against the e2e tests that
//! run the real Envoy: each request an e2e test sends goes through [`on_request_headers`] over
//! the same catalog, and the filter's share of what the e2e test asserts is checked here: what
//! is removed, set, answered and counted.
//!
//! One section per e2e file, in this order, its tables and tests in the file's order:
//! - tests/test_filter.py: [`FORWARDED`] (22 rows) and [`REJECTED`] (12) are the e2e tables
//!   with the same rows in the same order and the same columns; `e2e_filter_other_tests` holds
//!   the requests of every other test of the file (13), each row naming its test.
//! - tests/test_compatibility.py: `e2e_compatibility`, the 14 requests of the file's tests in
//!   order, each row naming its test (and two rows of our own around the sunset instant). A
//!   request that goes through a caller's sidecar and then the callee's inbound listener runs
//!   through both filters ([`through`]).
//! - tests/test_robustness.py: the 54 hostile requests, generated like `hostile_requests()`,
//!   then the normal request after them, the non-UTF-8 and the oversized version.
//! - tests/test_traffic.py: the route key and sticky number each test's requests get (the same
//!   60 and 200 clients).
//! - tests/test_lenient.py: its tables [`NEGOTIATED`] (9 rows), [`NOT_ACCEPTABLE`] (3),
//!   [`DECODED`] (4) and [`UNREADABLE`] (4), and the request of its one other test.
//! - tests/test_mtls.py: `e2e_mtls`, the requests that reach the inbound listener binding caller
//!   claims to the mTLS peer, each with the peer's SPIFFE ID, and how often the peer was read.
//!
//! What each row asserts, as the e2e test does: who may answer (the service and versions behind
//! the route key the filter wrote), the `:path` and `x-api-version` the upstream sees, that no
//! `x-meshver-` header reaches it but the caller identity on the inbound listener (the routing
//! listener strips the route, sticky and body headers, cli/src/render/envoy.rs), the
//! problem+json or gRPC answer, and the counter (`meshver_requests_total`, by service and outcome) it counts in.
//!
//! The e2e tests send most rows over HTTP/1.1 and HTTP/2: Envoy's codecs hand the filter the
//! same header map for both, so each row runs once here. Envoy's share, not run here, is
//! listed in each section: the weighted random split, the cluster the mesh picks, lifecycle
//! response headers from the rendered routes, the 404 of the catch-all route, counters summed
//! over workers, and requests Envoy's codec refuses before any filter runs.

use super::body::BODY_HEADER;
use super::fake::FakeHost;
use super::*;
use crate::caller::CALLER_HEADER;
use crate::config;
use crate::lifecycle::parse_instant;
use crate::problem::{Answer, PROBLEM_CONTENT_TYPE};
use crate::sticky::{bucket, STICKY_HEADER};
use serde_json::{json, Value};

/// A request's headers besides the pseudo-headers, as the e2e test sends them.
type Headers<'a> = &'a [(&'a str, &'a [u8])];

/// The user 2.x line: a request for it may be answered by either deployment.
const V2_LINE: &[&str] = &["2.0.3", "2.1.0"];

/// The versions a service's refusals list, as the e2e tests expect them.
fn supported_versions(service: &str) -> &'static [&'static str] {
    match service {
        "user" => &["1.4.0", "2.0.3", "2.1.0"],
        _ => &["1.2.0", "2.0.0"],
    }
}

/// The proxy's clock when these rows were written (and the e2e tests passed): the demo's user
/// 1.x line is deprecated but not yet past its sunset (2027-06-30). The e2e tests run on the
/// wall clock: from that day on, their rows that default to 1.x get 410 instead.
fn today() -> i64 {
    at("2026-11-26")
}

fn at(instant: &str) -> i64 {
    parse_instant(instant).unwrap()
}

fn demo_json() -> Value {
    serde_json::from_slice(include_bytes!("../../examples/catalog.json")).unwrap()
}

fn demo() -> Catalog {
    config::load(include_bytes!("../../examples/catalog.json")).unwrap()
}

/// A listener's copy of a catalog: the fields `meshver render envoy` sets on top of the
/// catalog file (cli/src/mesh.rs, `MeshListener::overlay`).
fn listener(catalog: &Value, overlay: Value) -> Catalog {
    let mut merged = catalog.clone();
    for (name, value) in overlay.as_object().unwrap() {
        merged[name] = value.clone();
    }
    config::load(merged.to_string().as_bytes()).unwrap()
}

/// The DemoStack's listeners over one catalog (tests/harness.py): the edge, the callee side
/// of the mesh that trusts stamped caller identities, and the sidecar of order 1.2.0 and 2.0.0.
struct Stack {
    edge: Catalog,
    inbound: Catalog,
    order_1_sidecar: Catalog,
    order_2_sidecar: Catalog,
}

impl Stack {
    fn new(catalog: &Value) -> Stack {
        let sidecar = |version: &str| listener(catalog, json!({"caller": {"service": "order", "version": version}}));
        Stack {
            edge: listener(catalog, json!({})),
            inbound: listener(catalog, json!({"trust_caller_headers": true})),
            order_1_sidecar: sidecar("1.2.0"),
            order_2_sidecar: sidecar("2.0.0"),
        }
    }
}

/// A request as Envoy hands it to the filter, on the proxy's clock [`today`].
fn request(method: &str, path: &[u8], headers: Headers) -> FakeHost {
    let mut all: Vec<(&str, &[u8])> =
        vec![(":authority", b"127.0.0.1"), (":path", path), (":method", method.as_bytes()), (":scheme", b"http")];
    all.extend_from_slice(headers);
    FakeHost { now: today(), ..FakeHost::new(&all) }
}

fn post(path: &str, headers: Headers) -> FakeHost {
    request("POST", path.as_bytes(), headers)
}

/// Runs the request through each listener's filter in turn while it goes on; the last hop
/// that ran, what it decided and the request as it left it. Every hop first removes each
/// `x-meshver-` header it was handed, whatever it decides.
fn through<'c>(hops: &[&'c Catalog], mut host: FakeHost) -> (&'c Catalog, Verdict, FakeHost) {
    for (index, hop) in hops.iter().enumerate() {
        let owned: Vec<String> = host.owned_headers().into_iter().map(|(name, _)| name).collect();
        let verdict = on_request_headers(&mut host, hop);
        assert_eq!(host.removed, owned, "hop {index}: owned headers are removed");
        if verdict == Verdict::Answered || index + 1 == hops.len() {
            return (hop, verdict, host);
        }
        assert_eq!(host.counted_requests(hop).len(), 1, "hop {index} counts the request once");
        host = host.passed_on();
    }
    panic!("no hops")
}

fn counted(catalog: &Catalog, host: &FakeHost) -> Vec<String> {
    host.counted_requests(catalog)
}

/// The service and versions a route key reaches: a deployment's own key pins it; a line's
/// key leaves the choice among the line's deployments to the mesh's weights.
fn behind<'c>(catalog: &'c Catalog, route: &str) -> (&'c str, &'c [config::Deployment]) {
    catalog
        .services
        .iter()
        .find_map(|service| {
            let pinned = service.deployments.iter().find(|d| d.route == route).map(std::slice::from_ref);
            let line = service.lines.iter().find(|l| l.route == route).map(|l| service.line_deployments(l));
            Some((service.name.as_str(), pinned.or(line)?))
        })
        .unwrap_or_else(|| panic!("route key {route:?} names no deployment or line"))
}

/// What an e2e test asserts about one request.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    Upstream(Upstream<'a>),
    Problem(Refusal<'a>),
    /// Answered with a gRPC status and the problem type in the metadata.
    Grpc {
        code: u32,
        kind: &'a str,
    },
    /// No service matched: nothing set or answered.
    Untouched,
}

/// Forwarded: the service and versions that may answer, the `:path` and `x-api-version` the
/// upstream sees, and the caller identity it sees (only behind the inbound listener).
#[derive(Debug, Clone, Copy)]
struct Upstream<'a> {
    service: &'a str,
    versions: &'a [&'a str],
    path: &'a str,
    version: &'a str,
    caller: Option<&'a str>,
}

/// Answered with problem+json: the service, status and problem type, `requested_version`,
/// further members of the body (a JSON object) and what the detail names.
#[derive(Debug, Clone, Copy)]
struct Refusal<'a> {
    service: &'a str,
    status: u32,
    kind: &'a str,
    requested: Option<&'a str>,
    members: &'a str,
    detail: &'a [&'a str],
}

const fn upstream<'a>(service: &'a str, versions: &'a [&'a str], path: &'a str, version: &'a str) -> Want<'a> {
    Want::Upstream(Upstream { service, versions, path, version, caller: None })
}

/// Forwarded by the inbound listener, the caller's identity passed on to the upstream.
const fn from_caller<'a>(caller: &'a str, service: &'a str, versions: &'a [&'a str], version: &'a str) -> Want<'a> {
    Want::Upstream(Upstream { service, versions, path: "/login", version, caller: Some(caller) })
}

/// A refusal by the user service, nothing more asserted of its body than of every refusal.
const fn refusal<'a>(status: u32, kind: &'a str, requested: Option<&'a str>) -> Refusal<'a> {
    Refusal { service: "user", status, kind, requested, members: "{}", detail: &[] }
}

/// Checks what the filter did to one request against what the e2e test asserts.
fn check(catalog: &Catalog, row: &str, verdict: Verdict, host: &FakeHost, want: &Want) {
    let counted = counted(catalog, host);
    match *want {
        Want::Upstream(Upstream { service, versions, path, version, caller }) => {
            assert_eq!((verdict, &host.answer), (Verdict::Continue, &None), "{row}");
            let route = host.header(&catalog.route_header).unwrap_or_else(|| panic!("{row}: no route key"));
            let (reached, deployments) = behind(catalog, &route);
            let reached_versions: Vec<String> = deployments.iter().map(|d| d.version.to_string()).collect();
            assert_eq!(reached, service, "{row}: route {route}");
            assert_eq!(reached_versions, versions, "{row}: route {route}");
            assert_eq!(host.header(":path").as_deref(), Some(path), "{row}");
            assert_eq!(host.header("x-api-version").as_deref(), Some(version), "{row}");
            let mut leaked = host.owned_headers();
            leaked.retain(|(name, _)| {
                ![catalog.route_header.as_str(), STICKY_HEADER, BODY_HEADER].contains(&name.as_str())
            });
            let stamped: Vec<(String, String)> =
                caller.iter().map(|c| (CALLER_HEADER.to_owned(), (*c).to_owned())).collect();
            assert_eq!(leaked, stamped, "{row}: filter headers the upstream sees");
            assert_eq!(counted, [format!("{service}.forwarded")], "{row}");
        }
        Want::Problem(Refusal { service, status, kind, requested, members, detail }) => {
            let answer = answered(row, verdict, host, &counted, service, kind);
            assert_eq!((answer.status, answer.grpc_status), (status, None), "{row}");
            assert_eq!(host.answer_header("content-type"), Some(PROBLEM_CONTENT_TYPE), "{row}");
            let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{row}: {e}"));
            assert_eq!(body["type"], format!("urn:meshver:problem:{kind}"), "{row}");
            assert_eq!((&body["status"], &body["service"]), (&json!(status), &json!(service)), "{row}");
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{row}: {body}");
            assert_eq!(body["supported_versions"], json!(supported_versions(service)), "{row}");
            assert_eq!(body.get("requested_version").and_then(Value::as_str), requested, "{row}");
            let members: Value = serde_json::from_str(members).unwrap();
            for (name, value) in members.as_object().unwrap() {
                assert_eq!(&body[name], value, "{row}: {name}");
            }
            let text = body["detail"].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "{row}: {body}");
            for part in detail {
                assert!(text.contains(part), "{row}: {part:?} not in {text:?}");
            }
        }
        Want::Grpc { code, kind } => {
            let answer = answered(row, verdict, host, &counted, "user", kind);
            assert_eq!((answer.status, answer.grpc_status), (200, Some(code)), "{row}");
            let problem_type = format!("urn:meshver:problem:{kind}");
            assert_eq!(host.answer_header("meshver-problem-type"), Some(problem_type.as_str()), "{row}");
            // The body is the gRPC status message; Envoy sends it as grpc-message, percent-encoded.
            assert!(String::from_utf8_lossy(&answer.body).contains("version"), "{row}");
        }
        Want::Untouched => {
            assert_eq!((verdict, &host.answer), (Verdict::Continue, &None), "{row}");
            assert!(host.set.is_empty(), "{row}: {:?}", host.set);
            assert_eq!(counted, ["none.unmatched"], "{row}");
        }
    }
}

/// What every answer shares: nothing goes on or is rewritten, the service's versions are
/// listed, and the rejection is counted under its kind. The answer.
fn answered<'h>(
    row: &str,
    verdict: Verdict,
    host: &'h FakeHost,
    counted: &[String],
    service: &str,
    kind: &str,
) -> &'h Answer {
    assert_eq!(verdict, Verdict::Answered, "{row}");
    assert!(host.set.is_empty(), "{row}: a refused request is not rewritten: {:?}", host.set);
    let listed = supported_versions(service).join(", ");
    assert_eq!(host.answer_header("api-supported-versions"), Some(listed.as_str()), "{row}");
    assert_eq!(counted, [format!("{service}.{}", kind.replace('-', "_"))], "{row}");
    let answer = host.answer.as_ref().unwrap();
    // The access log's outcome: `meshver_<kind>{<service>}` or `…{<service>,<requested version>}`.
    let details = format!("meshver_{}{{{service}", kind.replace('-', "_"));
    assert!(answer.details.starts_with(&details) && answer.details.ends_with('}'), "{row}: {}", answer.details);
    assert!(!answer.details.contains(char::is_whitespace), "{row}: {}", answer.details);
    answer
}

/// A request's headers for a failure message, long or binary values shortened.
fn describe(host: &FakeHost) -> String {
    let shown: Vec<String> =
        host.headers.iter().map(|(name, value)| format!("{name}: {}", crate::problem::quote_raw(value))).collect();
    shown.join(", ")
}

/// Runs one request of an e2e test through `hops` and checks it.
fn send(test: &str, hops: &[&Catalog], host: FakeHost, want: &Want) -> FakeHost {
    let row = format!("{test}: {}", describe(&host));
    let (catalog, verdict, host) = through(hops, host);
    check(catalog, &row, verdict, &host, want);
    host
}

// ---------------------------------------------------------------------------------------
// tests/test_filter.py, over examples/catalog.json at the edge.
// Envoy's share: test_forwarded's and test_rejected's second protocol (the same header map);
// test_unmatched_paths_are_left_alone's 404 (the rendered catch-all route);
// test_the_2x_line_is_split_by_the_mesh's 90/10 split (weighted_clusters);
// test_outcomes_are_counted_in_envoys_stats's sum over workers (src/host/counters.rs).

/// test_forwarded's `FORWARDED`: path, request headers, service, versions that may answer,
/// path the upstream sees, x-api-version the upstream sees.
type ForwardedRow<'a> = (&'a str, Headers<'a>, &'a str, &'a [&'a str], &'a str, &'a str);
const FORWARDED: &[ForwardedRow] = &[
    // No version: the default (1) serves the 1.x line.
    ("/register", &[], "user", &["1.4.0"], "/register", "1"),
    ("/login", &[], "user", &["1.4.0"], "/login", "1"),
    // Header, each accepted form, normalised for the upstream.
    ("/register", &[("x-api-version", b"2")], "user", V2_LINE, "/register", "2"),
    ("/register", &[("x-api-version", b"v2")], "user", V2_LINE, "/register", "2"),
    ("/register", &[("x-api-version", b"V2")], "user", V2_LINE, "/register", "2"),
    ("/register", &[("x-api-version", b" 2.1 ")], "user", &["2.1.0"], "/register", "2.1"),
    ("/register", &[("x-api-version", b"2.1.0")], "user", &["2.1.0"], "/register", "2.1.0"),
    ("/register", &[("x-api-version", b"1.4.0")], "user", &["1.4.0"], "/register", "1.4.0"),
    // Path prefix, stripped.
    ("/v2/register", &[], "user", V2_LINE, "/register", "2"),
    ("/V2.1/login?x=1", &[], "user", &["2.1.0"], "/login?x=1", "2.1"),
    ("/v1/login", &[], "user", &["1.4.0"], "/login", "1"),
    // The older suffix form, stripped.
    ("/register_v2", &[], "user", V2_LINE, "/register", "2"),
    ("/login_v2.1", &[], "user", &["2.1.0"], "/login", "2.1"),
    // Accept: a version parameter or a vendor media type; Accept itself is left as sent.
    ("/register", &[("accept", b"application/json; version=2")], "user", V2_LINE, "/register", "2"),
    ("/register", &[("accept", b"application/vnd.acme.v2.1+json")], "user", &["2.1.0"], "/register", "2.1"),
    ("/register", &[("accept", b"application/vnd.other.v2+json")], "user", &["1.4.0"], "/register", "1"),
    // Query parameter, removed; other parameters kept in order.
    ("/register?api-version=2", &[], "user", V2_LINE, "/register", "2"),
    ("/register?a=1&api-version=2.1&b=2", &[], "user", &["2.1.0"], "/register?a=1&b=2", "2.1"),
    // gRPC: the package carries the version; the path is the gRPC method and stays.
    (
        "/acme.user.v2.UserService/Register",
        &[("content-type", b"application/grpc")],
        "user",
        V2_LINE,
        "/acme.user.v2.UserService/Register",
        "2",
    ),
    // Sources that agree are one request.
    ("/v2/register", &[("x-api-version", b"2")], "user", V2_LINE, "/register", "2"),
    // The order service, its own lines.
    ("/order", &[], "order", &["1.2.0"], "/order", "1"),
    ("/v2/order", &[], "order", &["2.0.0"], "/order", "2"),
];

#[test]
fn e2e_filter_forwarded() {
    let c = demo();
    for (path, headers, service, versions, upstream_path, version) in FORWARDED {
        let host =
            send("test_forwarded", &[&c], post(path, headers), &upstream(service, versions, upstream_path, version));
        let sent_accept = headers.iter().find(|(name, _)| *name == "accept").map(|(_, v)| String::from_utf8_lossy(v));
        assert_eq!(host.header("accept").map(Into::into), sent_accept, "{path}: Accept is left as sent");
    }
}

/// test_rejected's `REJECTED`: path, request headers, problem type, requested_version.
type RejectedRow<'a> = (&'a str, Headers<'a>, &'a str, Option<&'a str>);
const REJECTED: &[RejectedRow] = &[
    ("/register", &[("x-api-version", b"3")], "unsupported-version", Some("3")),
    ("/register", &[("x-api-version", b"2.2")], "unsupported-version", Some("2.2")),
    ("/v3/register", &[], "unsupported-version", Some("3")),
    ("/register", &[("x-api-version", b"two")], "malformed-version", None),
    ("/register", &[("x-api-version", b"2.x")], "malformed-version", None),
    ("/register", &[("x-api-version", b"2.1.3-beta")], "malformed-version", None),
    ("/v02/register", &[], "malformed-version", None),
    ("/register?api-version=latest", &[], "malformed-version", None),
    ("/register", &[("accept", b"application/json; version=next")], "malformed-version", None),
    ("/v1/register", &[("x-api-version", b"2")], "version-conflict", None),
    ("/register_v1?api-version=2", &[], "version-conflict", None),
    ("/register", &[("x-api-version", b"2"), ("accept", b"application/vnd.acme.v1+json")], "version-conflict", None),
];

#[test]
fn e2e_filter_rejected() {
    let c = demo();
    for (path, headers, kind, requested) in REJECTED {
        send("test_rejected", &[&c], post(path, headers), &Want::Problem(refusal(400, kind, *requested)));
    }
}

#[test]
fn e2e_filter_other_tests() {
    let c = demo();
    let detail = |kind, requested, detail| Want::Problem(Refusal { detail, ..refusal(400, kind, requested) });
    let forged: Headers =
        &[("x-meshver-route", b"user-2.1.0"), ("x-meshver-sticky", b"1"), ("x-meshver-anything", b"x")];
    let rows: Vec<(&str, FakeHost, Want)> = vec![
        (
            "test_rejection_details_name_what_was_wrong",
            post("/v1/register", &[("x-api-version", b"2")]),
            detail("version-conflict", None, &["header x-api-version", "path segment"]),
        ),
        (
            "test_rejection_details_name_what_was_wrong",
            post("/register", &[("x-api-version", b"two")]),
            detail("malformed-version", None, &["\"two\""]),
        ),
        (
            "test_rejection_details_name_what_was_wrong",
            post("/register", &[("x-api-version", b"3")]),
            detail("unsupported-version", Some("3"), &["^3", "2.1.0"]),
        ),
        (
            "test_clients_cannot_pick_a_backend",
            post("/register", forged),
            upstream("user", &["1.4.0"], "/register", "1"),
        ),
        (
            "test_unmatched_paths_are_left_alone",
            request("GET", b"/nothing-here?api-version=garbage", &[("x-api-version", b"garbage")]),
            Want::Untouched,
        ),
        (
            "test_the_2x_line_is_split_by_the_mesh",
            post("/register", &[("x-api-version", b"2")]),
            upstream("user", V2_LINE, "/register", "2"),
        ),
        (
            "test_the_2x_line_is_split_by_the_mesh",
            post("/register", &[("x-api-version", b"2.1")]),
            upstream("user", &["2.1.0"], "/register", "2.1"),
        ),
        (
            "test_outcomes_are_counted_in_envoys_stats",
            post("/register", &[]),
            upstream("user", &["1.4.0"], "/register", "1"),
        ),
        (
            "test_outcomes_are_counted_in_envoys_stats",
            post("/register", &[("x-api-version", b"9")]),
            Want::Problem(refusal(400, "unsupported-version", Some("9"))),
        ),
        (
            "test_outcomes_are_counted_in_envoys_stats",
            post("/order", &[("x-api-version", b"x")]),
            Want::Problem(Refusal { service: "order", ..refusal(400, "malformed-version", None) }),
        ),
        ("test_outcomes_are_counted_in_envoys_stats", request("GET", b"/elsewhere", &[]), Want::Untouched),
        (
            "test_grpc_clients_get_a_grpc_status",
            post("/acme.user.v9.UserService/Register", &[("content-type", b"application/grpc"), ("te", b"trailers")]),
            Want::Grpc { code: 12, kind: "unsupported-version" },
        ),
        (
            "test_grpc_clients_get_a_grpc_status",
            post(
                "/acme.user.v2.UserService/Register",
                &[("content-type", b"application/grpc"), ("te", b"trailers"), ("x-api-version", b"1")],
            ),
            Want::Grpc { code: 3, kind: "version-conflict" },
        ),
    ];
    for (test, host, want) in rows {
        send(test, &[&c], host, &want);
    }
}

/// Not an e2e row: a host that refuses or garbles the header map leaves the request alone.
#[test]
fn leaves_unreadable_requests_alone() {
    let c = demo();
    for mut host in [
        FakeHost { refuse_headers: true, ..post("/register", &[("x-meshver-route", b"user-2.1.0")]) },
        FakeHost { raw_header_map: Some(vec![9, 0, 0, 0, 1]), ..post("/register", &[]) },
    ] {
        assert_eq!(on_request_headers(&mut host, &c), Verdict::Continue);
        assert!(host.set.is_empty() && host.removed.is_empty() && host.answer.is_none() && host.counted.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// tests/test_compatibility.py, over examples/catalog.json through the DemoStack's listeners,
// and the two catalogs its fixtures derive from it (a stale caller's, a sunset one).
// Envoy's share: the cluster the mesh picks behind a line's route key (checked here as the
// versions behind the key), cluster request counts, and the Deprecation, Sunset and Link
// response headers, added by the rendered routes: here, the lifecycle headers of the
// deployments behind the route key (`e2e_compatibility_lifecycle_headers`).

/// The `callee_with_stale_caller` fixture's caller catalog: user deployments accept anyone,
/// order deployments require nothing.
fn stale_caller_json() -> Value {
    let mut stale = demo_json();
    for (service, field) in [(0, "accepts"), (1, "requires")] {
        for deployment in stale["services"][service]["deployments"].as_array_mut().unwrap() {
            deployment.as_object_mut().unwrap().remove(field);
        }
    }
    stale
}

/// The `sunset_stack` fixture's catalog: user 1.x past its sunset, 2.0.3 deprecated, 50/50.
fn sunset_json() -> Value {
    let mut catalog = demo_json();
    let user = &mut catalog["services"][0];
    user["lines"]["1"]["lifecycle"]["deprecated"] = json!("2001-01-01");
    user["lines"]["1"]["lifecycle"]["sunset"] = json!("2001-06-30T12:00:00Z");
    user["deployments"][1]["lifecycle"] = json!({"deprecated": "2026-03-01", "sunset": "2099-01-01"});
    user["deployments"][1]["weight"] = json!(50);
    user["deployments"][2]["weight"] = json!(50);
    catalog
}

#[test]
fn e2e_compatibility() {
    let demo = Stack::new(&demo_json());
    let stale_caller = Stack::new(&stale_caller_json()).order_2_sidecar;
    let sunset = Stack::new(&sunset_json()).edge;
    let edge = &[&demo.edge][..];
    // The order deployments call user through their own sidecar, which passes the request on
    // to the inbound listener (`forward_to`); order's own request to user carries no version.
    let order_2_calls = &[&demo.order_2_sidecar, &demo.inbound][..];
    let order_1_calls = &[&demo.order_1_sidecar, &demo.inbound][..];
    let stale_calls = &[&stale_caller, &demo.inbound][..];
    let order_2_sidecar = &[&demo.order_2_sidecar][..];
    let sunset_edge = &[&sunset][..];
    let no_compatible = Refusal {
        members: r#"{"required_range": ">=2.1, <3", "caller": "order/2.0.0"}"#,
        detail: &["1.4.0", ">=2.1, <3"],
        ..refusal(503, "no-compatible-deployment", Some("1"))
    };
    let incompatible = Refusal {
        members: r#"{"caller": "order/2.0.0", "refused_by": [{"version": "1.4.0", "accepts": "<2"}]}"#,
        detail: &["user 1.4.0 accepts order <2"],
        ..refusal(409, "incompatible-caller", Some("1"))
    };
    let gone = Refusal {
        members: r#"{"successor": "2"}"#,
        detail: &["sunset", "Move to version 2"],
        ..refusal(410, "version-gone", Some("1"))
    };
    let sunset_at = at("2001-06-30T12:00:00Z");
    let login = |headers| post("/login", headers);
    let json_body: Headers = &[("content-type", b"application/json")];
    let rows: Vec<(&str, &[&Catalog], FakeHost, Want)> = vec![
        (
            "test_pinned_requests_never_reach_an_older_minor_in_a_canary",
            edge,
            login(&[("x-api-version", b"2.1")]),
            upstream("user", &["2.1.0"], "/login", "2.1"),
        ),
        (
            "test_pinned_requests_never_reach_an_older_minor_in_a_canary",
            edge,
            login(&[("accept", b"application/vnd.acme.v2.1+json")]),
            upstream("user", &["2.1.0"], "/login", "2.1"),
        ),
        (
            "test_pinned_requests_never_reach_an_older_minor_in_a_canary",
            edge,
            login(&[("x-api-version", b"2")]),
            upstream("user", V2_LINE, "/login", "2"),
        ),
        (
            "test_order_2_reaches_only_user_2_1_through_its_sidecar",
            edge,
            post("/v2/order", &[]),
            upstream("order", &["2.0.0"], "/order", "2"),
        ),
        (
            "test_order_2_reaches_only_user_2_1_through_its_sidecar",
            order_2_calls,
            login(json_body),
            from_caller("order/2.0.0", "user", &["2.1.0"], "2"),
        ),
        ("test_order_1_reaches_user_1", edge, post("/order", &[]), upstream("order", &["1.2.0"], "/order", "1")),
        (
            "test_order_1_reaches_user_1",
            order_1_calls,
            login(json_body),
            from_caller("order/1.2.0", "user", &["1.4.0"], "1"),
        ),
        (
            "test_no_compatible_deployment_is_503_at_the_callers_sidecar",
            order_2_sidecar,
            login(&[("x-api-version", b"1")]),
            Want::Problem(no_compatible),
        ),
        (
            "test_edge_clients_cannot_claim_to_be_a_caller",
            edge,
            login(&[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"1")]),
            upstream("user", &["1.4.0"], "/login", "1"),
        ),
        (
            "test_callee_refuses_an_incompatible_caller_with_409",
            stale_calls,
            login(&[("x-api-version", b"1")]),
            Want::Problem(incompatible),
        ),
        (
            "test_callee_refuses_an_incompatible_caller_with_409",
            stale_calls,
            login(&[("x-api-version", b"2.1")]),
            from_caller("order/2.0.0", "user", &["2.1.0"], "2.1"),
        ),
        ("test_deprecated_versions_announce_their_end", edge, login(&[]), upstream("user", &["1.4.0"], "/login", "1")),
        (
            "test_deprecated_versions_announce_their_end",
            edge,
            login(&[("x-api-version", b"2")]),
            upstream("user", V2_LINE, "/login", "2"),
        ),
        ("test_after_sunset_the_answer_is_410_naming_the_successor", sunset_edge, login(&[]), Want::Problem(gone)),
        (
            "test_after_sunset_the_answer_is_410_naming_the_successor (native only: a second before the sunset)",
            sunset_edge,
            FakeHost { now: sunset_at - 1, ..login(&[]) },
            upstream("user", &["1.4.0"], "/login", "1"),
        ),
        (
            "test_after_sunset_the_answer_is_410_naming_the_successor (native only: at the sunset)",
            sunset_edge,
            FakeHost { now: sunset_at, ..login(&[]) },
            Want::Problem(gone),
        ),
        (
            "test_lifecycle_headers_follow_the_deployment_the_mesh_picked",
            sunset_edge,
            login(&[("x-api-version", b"2")]),
            upstream("user", V2_LINE, "/login", "2"),
        ),
    ];
    for (test, hops, host, want) in rows {
        send(test, hops, host, &want);
    }
}

/// test_deprecated_versions_announce_their_end and
/// test_lifecycle_headers_follow_the_deployment_the_mesh_picked: Envoy adds each deployment's
/// lifecycle headers to what it answers, from the rendered routes. The filter's share is the
/// route key; the headers are those of the catalog's deployments behind it.
#[test]
fn e2e_compatibility_lifecycle_headers() {
    let deprecated_1 = [
        ("deprecation", "@1767225600"),
        ("sunset", "Wed, 30 Jun 2027 00:00:00 GMT"),
        ("link", "<https://api.example.com/docs/user/v2>; rel=\"successor-version\""),
    ];
    let deprecated_2_0_3 = [("deprecation", "@1772323200"), ("sunset", "Thu, 01 Jan 2099 00:00:00 GMT")];
    type Row<'a> = (Catalog, Headers<'a>, &'a [(&'a str, &'a [(&'a str, &'a str)])]);
    let rows: [Row; 3] = [
        (demo(), &[], &[("1.4.0", &deprecated_1)]),
        (demo(), &[("x-api-version", b"2")], &[("2.0.3", &[]), ("2.1.0", &[])]),
        (Stack::new(&sunset_json()).edge, &[("x-api-version", b"2")], &[("2.0.3", &deprecated_2_0_3), ("2.1.0", &[])]),
    ];
    for (catalog, headers, want) in rows {
        let (_, _, host) = through(&[&catalog], post("/login", headers));
        let route = host.header(&catalog.route_header).unwrap();
        let (_, deployments) = behind(&catalog, &route);
        let announced: Vec<(String, Vec<(&str, &str)>)> = deployments
            .iter()
            .map(|d| {
                let headers = d.lifecycle.response_headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                (d.version.to_string(), headers)
            })
            .collect();
        let want: Vec<(String, Vec<(&str, &str)>)> = want.iter().map(|(v, h)| ((*v).to_owned(), h.to_vec())).collect();
        assert_eq!(announced, want, "{headers:?}");
    }
}

// ---------------------------------------------------------------------------------------
// tests/test_robustness.py, over examples/catalog.json at the edge.
// Envoy's share: requests its codec refuses before any filter runs (the request line
// `\xff\xfe`, the header name `:weird`, which still run here: the filter must survive any
// header map), `*` and `http://x/register` as it rewrites them (they run here as sent), the
// pipelined requests (one row here: each is one request), closed connections, worker health
// and `[critical]` log lines.

/// `hostile_requests()`: every bad value in each of the six places, then every bad target.
fn hostile_requests() -> Vec<FakeHost> {
    let long = b"9".repeat(20_000);
    let bad_values: [Vec<u8>; 7] = [
        b"\xff\xfe".to_vec(),
        b"\xc3\x28".to_vec(),
        b"2\x80".to_vec(),
        b"v\xe2\x82".to_vec(),
        b" ".repeat(100),
        long.clone(),
        [&b"2"[..], &b".1".repeat(3000)].concat(),
    ];
    let mut requests = Vec::new();
    for value in &bad_values {
        let accept = [&b"application/vnd.acme.v"[..], value, b"+json"].concat();
        let places: [&[(&str, &[u8])]; 6] = [
            &[("x-api-version", value)],
            &[("accept", &accept)],
            &[("x-meshver-route", value)],
            &[("content-type", b"application/grpc"), ("cookie", value)],
            &[("x-api-version", b"2"), ("x-api-version", value)],
            &[("x-user-id", value), (":weird", b"x")],
        ];
        requests.extend(places.iter().map(|headers| request("POST", b"/register", headers)));
    }
    let targets: [Vec<u8>; 11] = [
        b"/register?api-version=%ff%fe".to_vec(),
        [&b"/v"[..], &long, b"/register"].concat(),
        [&b"/register_v"[..], &long].concat(),
        [&b"/register?"[..], &b"api-version=2&".repeat(2000)].concat(),
        b"//".to_vec(),
        b"/%00".to_vec(),
        b"*".to_vec(),
        b"http://x/register".to_vec(),
        [&b"/acme.user.v"[..], &long, b".S/M"].concat(),
        b"/v2/register_v2.1".to_vec(),
        b"/register?&&&==&api-version".to_vec(),
    ];
    requests.extend(targets.iter().map(|target| request("POST", target, &[])));
    requests.push(request("POST", b"/register", &[("x-api-version", b"2"), ("x-api-version", b"2")]));
    requests
}

/// test_hostile_stream_leaves_every_worker_healthy: no request makes the filter panic or answer
/// 5xx; a forged route key never survives; over the e2e test's four passes, more than 50 of
/// the filter's own 400s.
#[test]
fn e2e_robustness_hostile_stream() {
    let c = demo();
    let mut answered_400 = 0;
    for host in hostile_requests() {
        let row = describe(&host);
        let forged = host.header(&c.route_header);
        let (_, verdict, host) = through(&[&c], host);
        assert_eq!(host.counted_requests(&c).len(), 1, "{row}");
        if let Some(answer) = &host.answer {
            assert_eq!((verdict, answer.status), (Verdict::Answered, 400), "{row}");
            answered_400 += 1;
        }
        if let Some(route) = host.header(&c.route_header) {
            assert_ne!(Some(&route), forged.as_ref(), "{row}: the client's route key survived");
            behind(&c, &route);
        }
    }
    assert!(4 * answered_400 > 50, "{answered_400} answers of 400 in one pass");

    // Then normal requests, a forged route key among their headers, are served correctly.
    let forged: Headers = &[("x-meshver-route", b"user-1.4.0")];
    let want = upstream("user", &["2.1.0"], "/register?k=1", "2.1");
    send("test_hostile_stream_leaves_every_worker_healthy", &[&c], post("/v2.1/register?k=1", forged), &want);
}

#[test]
fn e2e_robustness_precise_answers() {
    let c = demo();
    let non_utf8 = Refusal { detail: &["2\u{fffd}"], ..refusal(400, "malformed-version", None) };
    let oversized = "1".repeat(5000);
    let rows: [(&str, FakeHost, Want); 2] = [
        (
            "test_non_utf8_version_is_a_precise_400",
            post("/register", &[("x-api-version", b"2\xff")]),
            Want::Problem(non_utf8),
        ),
        (
            "test_oversized_values_are_refused_not_echoed",
            post("/register", &[("x-api-version", oversized.as_bytes())]),
            Want::Problem(refusal(400, "malformed-version", None)),
        ),
    ];
    for (test, host, want) in rows {
        let host = send(test, &[&c], host, &want);
        let body = host.answer.map(|a| a.body).unwrap_or_default();
        assert!(body.len() < 2000, "{test}: a body of {} bytes", body.len());
    }
}

// ---------------------------------------------------------------------------------------
// tests/test_traffic.py, over examples/catalog.json at the edge: every request is
// `POST /login` with `x-api-version: 2`, some with a client key in `x-user-id`.
// Envoy's share: the weights (moved through its admin runtime), the random split of unkeyed
// requests, the choice of a cluster from the sticky number and test_a_runtime_shift_under_load's
// timing. Here: each request's route key and sticky number, and the e2e tests' bounds on shares
// ([`binomial_bounds`]) over those numbers with the arithmetic of the rendered route
// ([`envoy_picks_new`]).

/// The sticky number a 2.x request of `client` gets (`None`: no key, no number), checked as
/// forwarded to the 2.x line like every request of these tests.
fn sticky_number(catalog: &Catalog, client: Option<&str>) -> Option<String> {
    let key: Vec<(&str, &[u8])> = client.iter().map(|c| ("x-user-id", c.as_bytes())).collect();
    let host = post("/login", &[&[("x-api-version", &b"2"[..])][..], &key].concat());
    let host = send("test_traffic.py version_for", &[catalog], host, &upstream("user", V2_LINE, "/login", "2"));
    host.header(STICKY_HEADER)
}

/// Envoy's weighted route with `header_name` (cli/src/render/envoy.rs): the sticky number mod
/// the total weight (100 here), clusters newest first; so below `new` is the new deployment.
fn envoy_picks_new(sticky: &str, new: u64) -> bool {
    sticky.parse::<u64>().unwrap() % 100 < new
}

/// tests/harness.py's `binomial_bounds(n, p)`: the counts of successes in `n` draws with
/// probability `p` within 5 standard deviations of the mean.
fn binomial_bounds(n: usize, p: f64) -> (usize, usize) {
    let mean = n as f64 * p;
    let spread = 5.0 * (mean * (1.0 - p)).sqrt();
    ((mean - spread).floor().max(0.0) as usize, ((mean + spread).ceil() as usize).min(n))
}

/// test_unkeyed_split_follows_the_weights and test_a_runtime_shift_under_load_fails_no_request:
/// without a key the request gets the line's route key and no sticky number.
#[test]
fn e2e_traffic_unkeyed() {
    assert_eq!(sticky_number(&demo(), None), None);
}

/// test_keyed_clients_stay_on_one_deployment: 60 clients, 8 requests each, at 50/50.
#[test]
fn e2e_traffic_keyed_clients_stay() {
    let c = demo();
    let mut on_new = 0;
    for user in 0..60 {
        let key = format!("user-{user}");
        let numbers: Vec<String> = (0..8).map(|_| sticky_number(&c, Some(&key)).unwrap()).collect();
        assert_eq!(numbers, vec![bucket(key.as_bytes()); 8], "{key}");
        on_new += usize::from(envoy_picks_new(&numbers[0], 50));
    }
    let (low, high) = binomial_bounds(60, 0.5);
    assert!((low..=high).contains(&on_new), "{on_new} of 60 clients on the new deployment, not {low}..={high}");
}

/// test_raising_the_new_weight_moves_clients_only_from_old_to_new: 200 clients over 0 → 100%.
#[test]
fn e2e_traffic_raising_the_weight() {
    let catalog = demo();
    let clients: Vec<String> = (0..200).map(|i| format!("customer-{i}")).collect();
    let mut previous = Vec::new();
    for weight in [0, 5, 25, 50, 75, 100] {
        // Each step asks again, as the e2e test does: only a number that stays put keeps the
        // rollout monotonic.
        let on_new: Vec<&String> =
            clients.iter().filter(|c| envoy_picks_new(&sticky_number(&catalog, Some(c)).unwrap(), weight)).collect();
        assert!(previous.iter().all(|c| on_new.contains(c)), "at {weight}% a client went back to the old version");
        // Near its weight: exactly none at 0%, exactly all at 100%.
        let (low, high) = binomial_bounds(clients.len(), weight as f64 / 100.0);
        assert!((low..=high).contains(&on_new.len()), "at {weight}%: {} clients, not {low}..={high}", on_new.len());
        previous = on_new;
    }
    assert_eq!(previous.len(), clients.len());
}

// ---------------------------------------------------------------------------------------
// tests/test_lenient.py, over examples/catalog.json at the edge.
// Envoy's share: the second protocol (the same header map; two Accept lines stay two
// entries in it), the Accept and query the upstream sees as sent, and the upstream
// cluster counters that show a refused request went nowhere.

/// test_accept_picks_the_preferred_served_version's `NEGOTIATED`: the Accept lines, versions
/// that may answer, x-api-version the upstream sees.
type NegotiatedRow<'a> = (Headers<'a>, &'a [&'a str], &'a str);
const NEGOTIATED: &[NegotiatedRow] = &[
    // Browsers and HTTP libraries name no version: the default, the 1.x line.
    (
        &[("accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")],
        &["1.4.0"],
        "1",
    ),
    (&[("accept", b"*/*")], &["1.4.0"], "1"),
    (&[("accept", b"application/json, text/plain, */*")], &["1.4.0"], "1"),
    // The version the client weighs most among those served.
    (&[("accept", b"application/vnd.acme.v2+json; q=0.5, application/vnd.acme.v1+json")], &["1.4.0"], "1"),
    (
        &[("accept", b"application/vnd.acme.v3+json, application/vnd.acme.v2.1+json;q=0.9, */*;q=0.1")],
        &["2.1.0"],
        "2.1",
    ),
    (&[("accept", b"application/json; version=1; q=0.2, application/json; version=2; q=0.8")], V2_LINE, "2"),
    // Equal weights keep the order sent; q=0 is never taken.
    (&[("accept", b"application/vnd.acme.v2+json, application/vnd.acme.v1+json")], V2_LINE, "2"),
    (&[("accept", b"application/vnd.acme.v2+json;q=0, application/vnd.acme.v1+json;q=0.1")], &["1.4.0"], "1"),
    // Two Accept lines are one list.
    (
        &[("accept", b"application/vnd.acme.v1+json;q=0.4"), ("accept", b"application/vnd.acme.v2.1+json;q=0.6")],
        &["2.1.0"],
        "2.1",
    ),
];

/// test_nothing_acceptable_is_406's `NOT_ACCEPTABLE`: the Accept lines, and the answer's
/// `acceptable_versions`.
const NOT_ACCEPTABLE: &[(Headers, &str)] = &[
    (&[("accept", b"application/vnd.acme.v3+json")], r#"["3"]"#),
    (
        &[("accept", b"application/vnd.acme.v3+json, application/vnd.acme.v2.2+json;q=0.5, */*;q=0.1")],
        r#"["3", "2.2"]"#,
    ),
    (&[("accept", b"application/vnd.acme.v1+json;q=0")], "[]"),
];

/// test_query_values_are_percent_decoded's `DECODED`: the query, versions that may answer,
/// the path and x-api-version the upstream sees.
const DECODED: &[(&str, &[&str], &str, &str)] = &[
    ("api-version=2%2E1", &["2.1.0"], "/register", "2.1"),
    ("%61%70%69%2D%76%65%72%73%69%6F%6E=%32%2E%31", &["2.1.0"], "/register", "2.1"),
    ("api%2Dversion=2&q=a%20b+c", V2_LINE, "/register?q=a%20b+c", "2"),
    ("api-version=+2.1", &["2.1.0"], "/register", "2.1"),
];

/// test_unreadable_values_are_a_precise_400's `UNREADABLE`: the path and headers, and what
/// the detail names.
const UNREADABLE: &[(&str, Headers, &[&str])] = &[
    ("/register?api-version=2%G1", &[], &["\"2%G1\"", "\"%G1\"", "percent-decoded"]),
    ("/register?api-version=2%", &[], &["\"2%\"", "\"%\""]),
    ("/register?api-version=2%2B1", &[], &["\"2%2B1\"", "not a version"]),
    ("/register", &[("accept", b"application/vnd.acme.v2+json;q=.5")], &["\"v2\"", "q=\".5\"", "not a q-value"]),
];

#[test]
fn e2e_lenient_accept() {
    let c = demo();
    for (headers, versions, version) in NEGOTIATED {
        let test = "test_accept_picks_the_preferred_served_version";
        let host = send(test, &[&c], post("/register", headers), &upstream("user", versions, "/register", version));
        let sent: Vec<String> = headers.iter().map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect();
        let left: Vec<String> = host
            .headers
            .iter()
            .filter(|(name, _)| name == "accept")
            .map(|(_, v)| String::from_utf8_lossy(v).into())
            .collect();
        assert_eq!(left, sent, "Accept is left as sent");
    }
    for (headers, acceptable) in NOT_ACCEPTABLE {
        let members = format!(r#"{{"acceptable_versions": {acceptable}, "title": "No acceptable API version"}}"#);
        let want = Refusal { members: &members, detail: &["Accept header"], ..refusal(406, "not-acceptable", None) };
        send("test_nothing_acceptable_is_406", &[&c], post("/register", headers), &Want::Problem(want));
    }
    let default = upstream("user", &["1.4.0"], "/register", "1");
    send("test_a_library_default_accept_gets_the_default", &[&c], post("/register", &[("accept", b"*/*")]), &default);
}

#[test]
fn e2e_lenient_query_and_unreadable() {
    let c = demo();
    for (query, versions, path, version) in DECODED {
        let host = post(&format!("/register?{query}"), &[]);
        send("test_query_values_are_percent_decoded", &[&c], host, &upstream("user", versions, path, version));
    }
    for (path, headers, detail) in UNREADABLE {
        let want = Refusal { detail, ..refusal(400, "malformed-version", None) };
        send("test_unreadable_values_are_a_precise_400", &[&c], post(path, headers), &Want::Problem(want));
    }
}

// ---------------------------------------------------------------------------------------
// tests/test_mtls.py: the demo's sidecar → inbound hop over mTLS, the inbound listener
// binding caller claims to the client certificate's SPIFFE ID (`caller_spiffe_ids`).
// Envoy's share: the TLS handshakes (a client without a certificate, or with one of another CA,
// never reaches the filter where a client certificate is required; nor does a sidecar that
// speaks plaintext to it), and the URI SAN it reports (the fake host's `peer_uri_san`).

const ORDER_ID: &str = "spiffe://cluster.local/ns/shop/sa/order";
const BILLING_ID: &str = "spiffe://cluster.local/ns/shop/sa/billing";

/// The demo's listeners, the inbound one binding claims: only order's SPIFFE ID may claim order.
fn bound_stack() -> (Stack, Catalog) {
    let demo = demo_json();
    let bound = json!({"trust_caller_headers": true, "caller_spiffe_ids": {"order": [ORDER_ID]}});
    (Stack::new(&demo), listener(&demo, bound))
}

/// A request through a caller's sidecar, as it reaches the next listener over mTLS with the
/// sidecar's certificate naming `peer`.
fn from_sidecar(sidecar: &Catalog, peer: &str, host: FakeHost) -> FakeHost {
    let (_, verdict, host) = through(&[sidecar], host);
    assert_eq!(verdict, Verdict::Continue);
    host.passed_on_by(peer)
}

/// A client connecting to the listener itself: over mTLS as `peer`, or in plaintext (`None`).
fn direct(peer: Option<&str>, headers: Headers) -> FakeHost {
    FakeHost { peer_uri_san: peer.map(|id| id.as_bytes().to_vec()), ..post("/login", headers) }
}

/// The 403 of a claim the peer may not make (`peer`: its SPIFFE ID as JSON, or `null`).
fn mismatch<'a>(members: &'a str, detail: &'a [&'a str]) -> Want<'a> {
    Want::Problem(Refusal { members, detail, ..refusal(403, "caller-mismatch", None) })
}

#[test]
fn e2e_mtls() {
    let (stack, inbound) = bound_stack();
    let hop = &[&inbound][..];
    let json_body: Headers = &[("content-type", b"application/json")];
    let claim_order_2: Headers = &[("x-meshver-caller", b"order/2.0.0")];
    let forged_sidecar = r#"{"caller": "order/2.0.0", "peer": "spiffe://cluster.local/ns/shop/sa/billing",
        "title": "Caller claim not made by the connection's peer"}"#;
    let plaintext = r#"{"caller": "order/2.0.0", "peer": null}"#;
    // (test, request as it reaches the inbound listener, what the test asserts, peer reads)
    let rows: Vec<(&str, FakeHost, Want, usize)> = vec![
        (
            "test_sidecars_with_their_own_certificate_are_honoured",
            from_sidecar(&stack.order_2_sidecar, ORDER_ID, post("/login", json_body)),
            from_caller("order/2.0.0", "user", &["2.1.0"], "2"),
            1,
        ),
        (
            "test_sidecars_with_their_own_certificate_are_honoured",
            from_sidecar(&stack.order_1_sidecar, ORDER_ID, post("/login", json_body)),
            from_caller("order/1.2.0", "user", &["1.4.0"], "1"),
            1,
        ),
        (
            "test_a_client_with_the_callers_certificate_is_that_caller",
            direct(Some(ORDER_ID), &[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"1")]),
            Want::Problem(Refusal {
                members: r#"{"caller": "order/2.0.0", "refused_by": [{"version": "1.4.0", "accepts": "<2"}]}"#,
                ..refusal(409, "incompatible-caller", Some("1"))
            }),
            1,
        ),
        (
            "test_a_client_with_the_callers_certificate_is_that_caller",
            direct(Some(ORDER_ID), &[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"2.1")]),
            from_caller("order/2.0.0", "user", &["2.1.0"], "2.1"),
            1,
        ),
        (
            "test_a_sidecar_whose_certificate_names_another_service_is_refused",
            from_sidecar(&stack.order_2_sidecar, BILLING_ID, post("/login", json_body)),
            mismatch(forged_sidecar, &["order/2.0.0", BILLING_ID, "may not speak for order"]),
            1,
        ),
        (
            "test_a_client_claiming_another_identity_is_refused",
            direct(Some(BILLING_ID), &[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"2.1")]),
            mismatch(forged_sidecar, &[BILLING_ID]),
            1,
        ),
        (
            "test_a_client_claiming_another_identity_is_refused",
            direct(Some(BILLING_ID), &[("x-meshver-requires", b">=2.1"), ("x-meshver-caller", b"order/9.0.0")]),
            mismatch(r#"{"caller": "order/9.0.0", "peer": "spiffe://cluster.local/ns/shop/sa/billing"}"#, &[]),
            1,
        ),
        (
            "test_a_client_claiming_another_identity_is_refused",
            direct(Some(BILLING_ID), &[]),
            upstream("user", &["1.4.0"], "/login", "1"),
            0,
        ),
        (
            "test_without_a_client_certificate_a_claim_is_refused",
            direct(None, claim_order_2),
            mismatch(plaintext, &["no client certificate", "mTLS"]),
            1,
        ),
        (
            "test_without_a_client_certificate_a_claim_is_refused",
            direct(None, &[("x-api-version", b"2.1")]),
            upstream("user", &["2.1.0"], "/login", "2.1"),
            0,
        ),
    ];
    for (test, host, want, peer_reads) in rows {
        let host = send(test, hop, host, &want);
        assert_eq!(host.peer_reads, peer_reads, "{test}: the peer is read only for a claim");
    }
}

/// Where claims are not bound, or not read, no request asks for the peer; an unreadable claim
/// is `decide`'s 400, and a request no service matches only loses the header.
#[test]
fn claims_are_bound_only_where_they_are_read() {
    let (stack, inbound) = bound_stack();
    let claim: Headers = &[("x-meshver-caller", b"order/1.2.0")];
    for (name, catalog) in
        [("edge", &stack.edge), ("unbound inbound", &stack.inbound), ("sidecar", &stack.order_2_sidecar)]
    {
        let mut host = direct(None, claim);
        assert_eq!(on_request_headers(&mut host, catalog), Verdict::Continue, "{name}");
        assert_eq!(host.peer_reads, 0, "{name}");
    }
    let mut unreadable = direct(None, &[("x-meshver-caller", b"order")]);
    assert_eq!(on_request_headers(&mut unreadable, &inbound), Verdict::Answered);
    assert_eq!((unreadable.answer.unwrap().status, unreadable.peer_reads), (400, 0));
    let mut unmatched = FakeHost { peer_uri_san: None, ..post("/elsewhere", claim) };
    assert_eq!(on_request_headers(&mut unmatched, &inbound), Verdict::Continue);
    assert_eq!((unmatched.peer_reads, unmatched.removed.as_slice()), (0, &["x-meshver-caller".to_owned()][..]));
    // A gRPC call is refused with PERMISSION_DENIED.
    let grpc: Headers = &[("content-type", b"application/grpc"), ("x-meshver-caller", b"order/2.0.0")];
    let mut call = FakeHost { peer_uri_san: None, ..post("/acme.user.v2.UserService/Login", grpc) };
    assert_eq!(on_request_headers(&mut call, &inbound), Verdict::Answered);
    assert_eq!(call.answer.as_ref().unwrap().grpc_status, Some(7));
    assert_eq!(call.answer_header("meshver-problem-type"), Some("urn:meshver:problem:caller-mismatch"));
}
