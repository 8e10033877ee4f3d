//! Table-driven tests of the decision, over the demo catalog.

use super::*;
use crate::config::{self, Catalog};
use crate::header_map::Header;
use crate::problem::ProblemKind;

fn demo() -> Catalog {
    config::load(include_bytes!("../../examples/catalog.json")).unwrap()
}

/// Headers for a request: `(name, value)` pairs, pseudo-headers included.
fn headers<'a>(path: &'a str, extra: &[(&'a str, &'a [u8])]) -> Vec<Header<'a>> {
    let mut h: Vec<Header> =
        vec![(b":method", b"POST"), (b":path", path.as_bytes()), (b":authority", b"localhost:10000")];
    h.extend(extra.iter().map(|(n, v)| (n.as_bytes(), *v)));
    h
}

/// What a forwarded request looks like, flattened for comparison.
#[derive(Debug, PartialEq)]
struct Seen {
    route: String,
    version_header: Option<String>,
    path: Option<String>,
}

fn forward(catalog: &Catalog, path: &str, extra: &[(&str, &[u8])]) -> Result<Seen, ProblemKind> {
    let h = headers(path, extra);
    let request = Request::new(&h);
    match decide(catalog, &request, 0).outcome {
        Outcome::Forward(f) => Ok(Seen {
            route: f.route.to_string(),
            // What the upstream sees: the value set, or the client's own when it was already right.
            version_header: f
                .set_headers
                .iter()
                .find(|(n, _)| *n == "x-api-version")
                .map(|(_, v)| v.as_ref())
                .or_else(|| request.first("x-api-version"))
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            path: f.path.map(|p| String::from_utf8_lossy(&p).into_owned()),
        }),
        Outcome::Reject(p) => Err(p.kind),
        Outcome::PassThrough => panic!("{path} matched no service"),
    }
}

fn seen(route: &str, version: &str, path: Option<&str>) -> Result<Seen, ProblemKind> {
    Ok(Seen { route: route.into(), version_header: Some(version.into()), path: path.map(Into::into) })
}

#[test]
fn resolves_every_source_and_form() {
    let c = demo();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], Result<Seen, ProblemKind>);
    let grpc: &[(&str, &[u8])] = &[("content-type", b"application/grpc")];
    let cases: Vec<Case> = vec![
        // No version: the default (1) serves the 1.x line.
        ("/register", &[], seen("user-v1", "1", None)),
        // Header, every accepted form.
        ("/register", &[("x-api-version", b"2")], seen("user-v2", "2", None)),
        ("/register", &[("x-api-version", b"v2")], seen("user-v2", "2", None)),
        ("/register", &[("x-api-version", b"V2")], seen("user-v2", "2", None)),
        ("/register", &[("x-api-version", b" 2.1 ")], seen("user-2.1.0", "2.1", None)),
        ("/register", &[("x-api-version", b"2.0")], seen("user-v2", "2.0", None)),
        ("/register", &[("x-api-version", b"2.0.4")], seen("user-2.1.0", "2.0.4", None)),
        ("/register", &[("x-api-version", b"1.4.0")], seen("user-v1", "1.4.0", None)),
        // Path prefix and suffix, stripped for the upstream.
        ("/v2/register", &[], seen("user-v2", "2", Some("/register"))),
        ("/V2.1/login?x=1", &[], seen("user-2.1.0", "2.1", Some("/login?x=1"))),
        ("/register_v2", &[], seen("user-v2", "2", Some("/register"))),
        ("/v2/register_v2", &[], seen("user-v2", "2", Some("/register"))),
        // Accept.
        ("/register", &[("accept", b"application/json; version=2")], seen("user-v2", "2", None)),
        ("/register", &[("accept", b"application/vnd.acme.v2.1+json")], seen("user-2.1.0", "2.1", None)),
        ("/register", &[("accept", b"application/vnd.other.v2+json")], seen("user-v1", "1", None)),
        // Query, the parameter removed and the rest kept in order.
        ("/register?api-version=2", &[], seen("user-v2", "2", Some("/register"))),
        ("/register?a=1&api-version=2.1&b=2", &[], seen("user-2.1.0", "2.1", Some("/register?a=1&b=2"))),
        // gRPC package.
        ("/acme.user.v2.UserService/Register", grpc, seen("user-v2", "2", None)),
        ("/acme.user.v1.UserService/Register", grpc, seen("user-v1", "1", None)),
        // Sources that agree are fine; ones that disagree are a conflict.
        // The first source in precedence order (header) gives the normalised value.
        ("/v2/register", &[("x-api-version", b"v2.0.0")], seen("user-v2", "2.0.0", Some("/register"))),
        ("/v1/register", &[("x-api-version", b"2")], Err(ProblemKind::VersionConflict)),
        ("/register?api-version=1", &[("accept", b"application/json; version=2")], Err(ProblemKind::VersionConflict)),
        ("/register", &[("x-api-version", b"2"), ("x-api-version", b"2.1")], Err(ProblemKind::VersionConflict)),
        ("/register?api-version=2&api-version=1", &[], Err(ProblemKind::VersionConflict)),
        // Malformed and unsupported.
        ("/register", &[("x-api-version", b"two")], Err(ProblemKind::MalformedVersion)),
        ("/register", &[("x-api-version", b"\xff\xfe")], Err(ProblemKind::MalformedVersion)),
        ("/register", &[("x-api-version", b"")], Err(ProblemKind::MalformedVersion)),
        ("/v02/register", &[], Err(ProblemKind::MalformedVersion)),
        ("/register?api-version=latest", &[], Err(ProblemKind::MalformedVersion)),
        ("/register", &[("accept", b"application/json; version=x")], Err(ProblemKind::MalformedVersion)),
        ("/register", &[("x-api-version", b"3")], Err(ProblemKind::UnsupportedVersion)),
        ("/register", &[("x-api-version", b"2.2")], Err(ProblemKind::UnsupportedVersion)),
        ("/register", &[("x-api-version", b"1.5")], Err(ProblemKind::UnsupportedVersion)),
        ("/v3/order", &[], Err(ProblemKind::UnsupportedVersion)),
        // The order service has its own lines.
        ("/order", &[], seen("order-v1", "1", None)),
        ("/v2/order", &[], seen("order-v2", "2", Some("/order"))),
    ];
    for (path, extra, want) in cases {
        assert_eq!(forward(&c, path, extra), want, "{path} {extra:?}");
    }
}

#[test]
fn strips_owned_headers_whatever_the_outcome() {
    let c = demo();
    for path in ["/register", "/nothing-here", "/register?api-version=9"] {
        let h =
            headers(path, &[("x-meshver-route", b"user-2.1.0"), ("x-meshver-anything", b"\xff"), ("x-other", b"1")]);
        let plan = decide(&c, &Request::new(&h), 0);
        assert_eq!(plan.remove_headers, vec!["x-meshver-route", "x-meshver-anything"], "{path}");
    }
}

#[test]
fn unmatched_requests_pass_through() {
    let c = demo();
    for path in ["/", "/orders-archive-x", "/v2/health", "", "*"] {
        let h = headers(path, &[("x-api-version", b"garbage")]);
        let outcome = decide(&c, &Request::new(&h), 0).outcome;
        // `/orders-archive-x` starts with `/order`: Envoy-style prefixes are plain string prefixes.
        if path.starts_with("/order") {
            assert!(matches!(outcome, Outcome::Reject(_)), "{path}");
        } else {
            assert_eq!(outcome, Outcome::PassThrough, "{path}");
        }
    }
}

#[test]
fn problems_name_the_service_and_versions() {
    let c = demo();
    let h = headers("/register", &[("x-api-version", b"3")]);
    let Outcome::Reject(problem) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not rejected") };
    assert_eq!(problem.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&problem.body()).unwrap();
    assert_eq!(body["type"], "urn:meshver:problem:unsupported-version");
    assert_eq!(body["status"], 400);
    assert_eq!(body["service"], "user");
    assert_eq!(body["requested_version"], "3");
    assert_eq!(body["supported_versions"], serde_json::json!(["1.4.0", "2.0.3", "2.1.0"]));
    assert!(body["detail"].as_str().unwrap().contains("^3"), "{body}");
    let headers = problem.headers();
    assert!(headers.contains(&("content-type", "application/problem+json".to_string())));
    assert!(headers.contains(&("api-supported-versions", "1.4.0, 2.0.3, 2.1.0".to_string())));
}

#[test]
fn defaults_latest_and_reject() {
    let catalog = |default: &str| {
        config::load(
            format!(
                r#"{{"services":[{{"name":"s","match":{{"path_prefixes":["/"]}},"default_version":"{default}",
            "deployments":[{{"version":"1.0.0"}},{{"version":"2.0.0"}},{{"version":"2.3.1"}}]}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let h = headers("/x", &[]);
    let route = |c: &Catalog| match decide(c, &Request::new(&h), 0).outcome {
        Outcome::Forward(f) => Ok(f.route.to_string()),
        Outcome::Reject(p) => Err(p.kind),
        Outcome::PassThrough => panic!("unmatched"),
    };
    assert_eq!(route(&catalog("latest")), Ok("s-v2".into()));
    assert_eq!(route(&catalog("2.3")), Ok("s-2.3.1".into()));
    assert_eq!(route(&catalog("1")), Ok("s-v1".into()));
    assert_eq!(route(&catalog("reject")), Err(ProblemKind::VersionRequired));
}

#[test]
fn hostile_input_never_panics() {
    let c = demo();
    let long = vec![b'9'; 100_000];
    let weird: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 64],
        long.clone(),
        b"v".to_vec(),
        b"/".to_vec(),
        b"?&&=&".to_vec(),
        b"/v/_v".to_vec(),
        [b"/v2/".as_slice(), &long].concat(),
    ];
    for path in &weird {
        for value in &weird {
            let mut h: Vec<Header> = vec![(b":path", path), (b":authority", value)];
            for name in ["x-api-version", "accept", "content-type", "x-meshver-route"] {
                h.push((name.as_bytes(), value));
                h.push((name.as_bytes(), value));
            }
            let _ = decide(&c, &Request::new(&h), 0);
        }
    }
}

#[test]
fn rewrite_can_be_turned_off() {
    let c = config::load(
        br#"{"services":[{"name":"s","match":{"path_prefixes":["/x"]},"default_version":"1",
        "rewrite":{"strip_version":false,"set_version_header":false},"deployments":[{"version":"1.0.0"}]}]}"#,
    )
    .unwrap();
    let h = headers("/v1/x?api-version=1", &[]);
    let Outcome::Forward(f) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not forwarded") };
    assert_eq!(f.path, None);
    assert_eq!(f.set_headers.len(), 1, "only the route header");
}

#[test]
fn hosts_match_case_insensitively() {
    let c = config::load(br#"{"services":[
        {"name":"a","match":{"hosts":["api.example.com"]},"default_version":"1","deployments":[{"version":"1.0.0"}]},
        {"name":"b","match":{"hosts":["*.svc.local"],"path_prefixes":["/b"]},"default_version":"1","deployments":[{"version":"1.0.0"}]}]}"#).unwrap();
    let service = |authority: &[u8], path: &str| {
        let h: Vec<Header> = vec![(b":path", path.as_bytes()), (b":authority", authority)];
        match decide(&c, &Request::new(&h), 0).outcome {
            Outcome::Forward(f) => Some(f.service.to_string()),
            _ => None,
        }
    };
    assert_eq!(service(b"API.example.com:443", "/anything"), Some("a".into()));
    assert_eq!(service(b"x.svc.local", "/b/1"), Some("b".into()));
    assert_eq!(service(b"x.svc.local", "/c"), None);
    assert_eq!(service(b"svc.local", "/b"), None);
}

/// The user service as seen from order's outbound sidecar, or from user's trusting inbound one.
fn mesh_catalog(top: &str) -> Catalog {
    config::load(
        format!(
            r#"{{{top} "services":[{{"name":"user","match":{{"path_prefixes":["/login"]}},"default_version":"1",
            "sticky":{{"header":"x-user-id"}},
            "lines":{{"1":{{"lifecycle":{{"deprecated":"2026-01-01","sunset":"2030-01-01","successor":"2","link":"https://docs.example.com/user/v2"}}}}}},
            "deployments":[{{"version":"1.4.0","accepts":{{"order":"<2"}}}},{{"version":"2.0.3"}},{{"version":"2.1.0"}}]}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// The headers a forwarded request gets, as text.
type SetHeaders = Vec<(String, String)>;

fn outcome(
    catalog: &Catalog,
    extra: &[(&str, &[u8])],
    now: i64,
) -> Result<(String, SetHeaders), (u16, serde_json::Value)> {
    let h = headers("/login", extra);
    match decide(catalog, &Request::new(&h), now).outcome {
        Outcome::Forward(f) => Ok((
            f.route.to_string(),
            f.set_headers.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned())).collect(),
        )),
        Outcome::Reject(p) => Err((p.status(), serde_json::from_slice(&p.body()).unwrap())),
        Outcome::PassThrough => panic!("unmatched"),
    }
}

#[test]
fn caller_requirements_narrow_resolution() {
    let order2 = mesh_catalog(r#""caller":{"service":"order","version":"2.0.0","requires":{"user":">=2.1, <3"}},"#);
    // No version: the requirement replaces the default, and pins 2.1.0 (2.0.3 is too old).
    let (route, set) = outcome(&order2, &[], 0).unwrap();
    assert_eq!(route, "user-2.1.0");
    assert!(set.contains(&("x-meshver-caller".into(), "order/2.0.0".into())), "{set:?}");
    assert!(set.contains(&("x-meshver-requires".into(), ">=2.1, <3".into())), "{set:?}");
    assert!(set.contains(&("x-api-version".into(), "2".into())), "{set:?}");
    // `2` would be the whole line, but the requirement pins it.
    assert_eq!(outcome(&order2, &[("x-api-version", b"2")], 0).unwrap().0, "user-2.1.0");
    // `1` exists, but not within the requirement: 503, naming the range.
    let (status, body) = outcome(&order2, &[("x-api-version", b"1")], 0).unwrap_err();
    assert_eq!(status, 503);
    assert_eq!(body["type"], "urn:meshver:problem:no-compatible-deployment");
    assert_eq!(body["required_range"], ">=2.1, <3");
    assert_eq!(body["caller"], "order/2.0.0");

    let order1 = mesh_catalog(r#""caller":{"service":"order","version":"1.2.0","requires":{"user":"^1"}},"#);
    assert_eq!(outcome(&order1, &[], 0).unwrap().0, "user-v1");
}

#[test]
fn callees_refuse_incompatible_callers() {
    let inbound = mesh_catalog(r#""trust_caller_headers":true,"#);
    // order 2.0.0 asking for 1.x: user 1.4.0 accepts only order <2.
    let (status, body) =
        outcome(&inbound, &[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"1")], 0).unwrap_err();
    assert_eq!(status, 409);
    assert_eq!(body["type"], "urn:meshver:problem:incompatible-caller");
    assert_eq!(body["caller"], "order/2.0.0");
    assert_eq!(body["refused_by"], serde_json::json!([{"version": "1.4.0", "accepts": "<2"}]));
    assert!(body["detail"].as_str().unwrap().contains("user 1.4.0 accepts order <2"), "{body}");
    // order 1.2.0 is accepted, and the callee passes the identity on.
    let (route, set) = outcome(&inbound, &[("x-meshver-caller", b"order/1.2.0")], 0).unwrap();
    assert_eq!(route, "user-v1");
    assert!(set.contains(&("x-meshver-caller".into(), "order/1.2.0".into())));
    // A stamped requirement narrows like the caller's own config would.
    let stamped = [("x-meshver-caller", &b"order/2.0.0"[..]), ("x-meshver-requires", b">=2.1, <3")];
    assert_eq!(outcome(&inbound, &stamped, 0).unwrap().0, "user-2.1.0");
    // Unreadable stamps are a 400, never ignored.
    let (status, _) = outcome(&inbound, &[("x-meshver-caller", b"order")], 0).unwrap_err();
    assert_eq!(status, 400);
    // Without trust, stamps are ignored (and removed by the host).
    let edge = mesh_catalog("");
    assert_eq!(
        outcome(&edge, &[("x-meshver-caller", b"order/2.0.0"), ("x-api-version", b"1")], 0).unwrap().0,
        "user-v1"
    );
}

#[test]
fn sunset_versions_are_gone() {
    let c = mesh_catalog("");
    let before = crate::lifecycle::parse_instant("2029-12-31").unwrap();
    let after = crate::lifecycle::parse_instant("2030-01-02").unwrap();
    assert_eq!(outcome(&c, &[], before).unwrap().0, "user-v1");
    let (status, body) = outcome(&c, &[], after).unwrap_err();
    assert_eq!(status, 410);
    assert_eq!(body["type"], "urn:meshver:problem:version-gone");
    assert_eq!(body["successor"], "2");
    // 2.x has no sunset.
    assert_eq!(outcome(&c, &[("x-api-version", b"2")], after).unwrap().0, "user-v2");
}

#[test]
fn sticky_keys_become_buckets() {
    let c = mesh_catalog("");
    let (_, set) = outcome(&c, &[("x-user-id", b"alice")], 0).unwrap();
    let bucket = set.iter().find(|(n, _)| n == "x-meshver-sticky").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(bucket, crate::sticky::bucket(b"alice"));
    let (_, set) = outcome(&c, &[], 0).unwrap();
    assert!(!set.iter().any(|(n, _)| n == "x-meshver-sticky"), "no key, no bucket: the mesh picks randomly");
}

#[test]
fn a_caller_takes_its_requirements_from_its_own_deployment() {
    let catalog = |caller: &str| {
        config::load(format!(r#"{{"caller":{caller},"services":[
            {{"name":"user","match":{{"path_prefixes":["/login"]}},"default_version":"1",
              "deployments":[{{"version":"1.4.0"}},{{"version":"2.0.3"}},{{"version":"2.1.0"}}]}},
            {{"name":"order","match":{{"path_prefixes":["/order"]}},"default_version":"1",
              "deployments":[{{"version":"1.2.0","requires":{{"user":"^1"}}}},{{"version":"2.0.0","requires":{{"user":">=2.1, <3"}}}}]}}]}}"#).as_bytes()).unwrap()
    };
    assert_eq!(outcome(&catalog(r#"{"service":"order","version":"2.0.0"}"#), &[], 0).unwrap().0, "user-2.1.0");
    assert_eq!(outcome(&catalog(r#"{"service":"order","version":"1.2.0"}"#), &[], 0).unwrap().0, "user-v1");
    // Given ranges win, even empty ones.
    assert_eq!(
        outcome(&catalog(r#"{"service":"order","version":"2.0.0","requires":{}}"#), &[], 0).unwrap().0,
        "user-v1"
    );
    // A caller not in the catalog requires nothing.
    assert_eq!(outcome(&catalog(r#"{"service":"report","version":"1.0.0"}"#), &[], 0).unwrap().0, "user-v1");
}

#[test]
fn writes_the_version_header_only_when_it_changes() {
    let c = demo();
    let writes = |extra: &[(&str, &[u8])]| {
        let h = headers("/register", extra);
        let Outcome::Forward(f) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not forwarded") };
        f.set_headers.iter().filter(|(n, _)| *n == "x-api-version").count()
    };
    assert_eq!(writes(&[("x-api-version", b"2")]), 0);
    assert_eq!(writes(&[("x-api-version", b"v2")]), 1);
    assert_eq!(writes(&[("x-api-version", b"2"), ("x-api-version", b"2")]), 1, "a repeated header becomes one");
    assert_eq!(writes(&[]), 1, "the default applied");
}

#[test]
fn accept_is_a_preference_list() {
    let c = demo();
    let default = || seen("user-v1", "1", None);
    let v2 = || seen("user-v2", "2", None);
    let v1 = || seen("user-v1", "1", None);
    type Case<'a> = (&'a [&'a [u8]], Result<Seen, ProblemKind>);
    let cases: Vec<Case> = vec![
        // As browsers and HTTP libraries send it, naming no version: the default.
        (&[b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"], default()),
        (&[b"*/*"], default()),
        (&[b"application/json, text/plain, */*"], default()),
        // The highest weight among the versions served.
        (&[b"application/vnd.acme.v2+json; q=0.5, application/vnd.acme.v1+json"], v1()),
        (
            &[b"application/vnd.acme.v1+json;q=0.2, application/vnd.acme.v2.1+json;q=0.9"],
            seen("user-2.1.0", "2.1", None),
        ),
        (&[b"application/json;version=1;q=0.9, application/json;version=2;q=0.95"], v2()),
        // Preferences no deployment serves are passed over.
        (&[b"application/vnd.acme.v3+json, application/vnd.acme.v2+json;q=0.8"], v2()),
        (&[b"application/vnd.acme.v2.2+json, application/json;version=2.1;q=0.5"], seen("user-2.1.0", "2.1", None)),
        // Equal weights: the order sent.
        (&[b"application/vnd.acme.v2+json, application/vnd.acme.v1+json"], v2()),
        (&[b"application/vnd.acme.v1+json;q=0.5, application/vnd.acme.v2+json;q=0.500"], v1()),
        // q=0 is "not acceptable", even for the only version served.
        (&[b"application/vnd.acme.v2+json;q=0, application/vnd.acme.v1+json;q=0.001"], v1()),
        // Several Accept lines are one list.
        (&[b"application/vnd.acme.v1+json;q=0.4", b"application/vnd.acme.v2+json;q=0.6"], v2()),
        // Other vendors' types and ranges without a version take no part, whatever their weight.
        (&[b"application/vnd.other.v9+json, application/vnd.acme.v2+json;q=0.1"], v2()),
        (&[b"text/html;q=high, application/vnd.acme.v2+json"], v2()),
        // Nothing it accepts is served: 406, even beside a wildcard.
        (&[b"application/vnd.acme.v3+json"], Err(ProblemKind::NotAcceptable)),
        (
            &[b"application/vnd.acme.v3+json, application/vnd.acme.v2.2+json;q=0.5, */*;q=0.1"],
            Err(ProblemKind::NotAcceptable),
        ),
        (&[b"application/vnd.acme.v2+json;q=0"], Err(ProblemKind::NotAcceptable)),
        (&[b"application/vnd.acme.v1+json;q=0, application/vnd.acme.v2+json;q=0.000"], Err(ProblemKind::NotAcceptable)),
        // An unreadable version or weight on a range that names a version: 400.
        (&[b"application/vnd.acme.v2+json;q=.5"], Err(ProblemKind::MalformedVersion)),
        (&[b"application/vnd.acme.v2+json;q=1.5, */*"], Err(ProblemKind::MalformedVersion)),
        (&[b"application/vnd.acme.v1+json, application/json;version=next;q=0.1"], Err(ProblemKind::MalformedVersion)),
        (&[b"application/vnd.acme.v1+json, application/vnd.acme.v2x+json;q=0"], Err(ProblemKind::MalformedVersion)),
    ];
    for (accept, want) in cases {
        let extra: Vec<(&str, &[u8])> = accept.iter().map(|value| ("accept", *value)).collect();
        assert_eq!(forward(&c, "/register", &extra), want, "{extra:?}");
    }
}

#[test]
fn accept_stands_for_its_pick_beside_other_sources() {
    let c = demo();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], Result<Seen, ProblemKind>);
    let cases: &[Case] = &[
        // The pick agrees with the header: one request, the header's form.
        (
            "/register",
            &[("x-api-version", b"2"), ("accept", b"application/vnd.acme.v1+json;q=0.5, application/vnd.acme.v2+json")],
            seen("user-v2", "2", None),
        ),
        // The pick disagrees: a conflict between sources, as before.
        (
            "/register",
            &[("x-api-version", b"2"), ("accept", b"application/vnd.acme.v1+json, application/vnd.acme.v2+json;q=0.5")],
            Err(ProblemKind::VersionConflict),
        ),
        ("/v2/register", &[("accept", b"application/vnd.acme.v3+json")], Err(ProblemKind::VersionConflict)),
        // They agree on a version nothing serves, or the header's version is refused: 406.
        (
            "/register",
            &[("x-api-version", b"3"), ("accept", b"application/vnd.acme.v3+json")],
            Err(ProblemKind::NotAcceptable),
        ),
        (
            "/register",
            &[("x-api-version", b"2"), ("accept", b"application/vnd.acme.v2+json;q=0")],
            Err(ProblemKind::NotAcceptable),
        ),
    ];
    for (path, extra, want) in cases {
        assert_eq!(forward(&c, path, extra), *want, "{path} {extra:?}");
    }
}

#[test]
fn a_406_names_what_the_client_accepts() {
    let c = demo();
    let accept: &[u8] =
        b"application/vnd.acme.v3+json, application/vnd.acme.v2.2+json;q=0.25, application/vnd.acme.v1+json;q=0";
    let h = headers("/register", &[("accept", accept)]);
    let Outcome::Reject(problem) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not rejected") };
    assert_eq!((problem.status(), problem.kind.grpc_code()), (406, 12));
    let body: serde_json::Value = serde_json::from_slice(&problem.body()).unwrap();
    assert_eq!(body["type"], "urn:meshver:problem:not-acceptable");
    assert_eq!(body["title"], "No acceptable API version");
    assert_eq!(body["status"], 406);
    assert_eq!(body["acceptable_versions"], serde_json::json!(["3", "2.2"]));
    assert_eq!(body.get("requested_version"), None);
    assert_eq!(
        body["detail"],
        "No deployment of user serves a version the Accept header accepts: 3 (q=1), 2.2 (q=0.25). \
         Deployed: 1.4.0, 2.0.3, 2.1.0."
    );
    let h = headers("/register", &[("accept", b"application/vnd.acme.v1+json;q=0")]);
    let Outcome::Reject(problem) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not rejected") };
    assert_eq!(
        problem.detail,
        "The Accept header refuses (q=0) every version of user it names. Deployed: 1.4.0, 2.0.3, 2.1.0."
    );
}

#[test]
fn query_values_are_percent_decoded() {
    let c = demo();
    let cases: &[(&str, Result<Seen, ProblemKind>)] = &[
        ("/register?api-version=2%2E1", seen("user-2.1.0", "2.1", Some("/register"))),
        ("/register?api-version=%76%32", seen("user-v2", "2", Some("/register"))),
        // The key is decoded too, and the other parameters are kept as sent.
        ("/register?api%2Dversion=2&q=a%20b+c", seen("user-v2", "2", Some("/register?q=a%20b+c"))),
        // `+` is a space, as in every server framework's query reader; `%2B` is a plus.
        ("/register?api-version=+2+", seen("user-v2", "2", Some("/register"))),
        ("/register?api-version=2%2B1", Err(ProblemKind::MalformedVersion)),
        // Equal once decoded: one version.
        ("/register?api-version=2%2e1&api-version=2.1", seen("user-2.1.0", "2.1", Some("/register"))),
        ("/register?api-version=2%2E1&api-version=2", Err(ProblemKind::VersionConflict)),
        // A broken escape in the version is refused; elsewhere it is not the filter's business.
        ("/register?api-version=2%G1", Err(ProblemKind::MalformedVersion)),
        ("/register?api-version=2%", Err(ProblemKind::MalformedVersion)),
        ("/register?api-version=%FF", Err(ProblemKind::MalformedVersion)),
        ("/register?note=100%&api-version=2", seen("user-v2", "2", Some("/register?note=100%"))),
        ("/register?api-version%=2", seen("user-v1", "1", None)),
    ];
    for (path, want) in cases {
        assert_eq!(forward(&c, path, &[]), *want, "{path}");
    }
}

#[test]
fn a_broken_escape_is_named() {
    let c = demo();
    let h = headers("/register?api-version=2%G1", &[]);
    let Outcome::Reject(problem) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not rejected") };
    assert_eq!(
        problem.detail,
        "The query parameter api-version gives \"2%G1\", which cannot be percent-decoded: \"%G1\" is not a % \
         followed by two hex digits."
    );
    let h = headers("/register", &[("accept", b"application/vnd.acme.v2+json;q=0.75.")]);
    let Outcome::Reject(problem) = decide(&c, &Request::new(&h), 0).outcome else { panic!("not rejected") };
    assert_eq!(
        problem.detail,
        "The Accept header gives \"v2\" with the weight q=\"0.75.\", which is not a q-value (0 to 1, at most \
         three decimals)."
    );
}
