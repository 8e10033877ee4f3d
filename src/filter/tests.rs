//! The whole request path over the demo catalog, through the in-memory host: what is
//! removed, set, answered and counted.

use super::fake::FakeHost;
use super::*;
use crate::config;
use crate::metrics::counter_names;

fn demo() -> Catalog {
    config::load(include_bytes!("../../examples/catalog.json")).unwrap()
}

fn run(catalog: &Catalog, headers: &[(&str, &[u8])]) -> (Verdict, FakeHost) {
    let mut host = FakeHost::new(headers);
    let verdict = on_request_headers(&mut host, catalog);
    (verdict, host)
}

fn counted(catalog: &Catalog, host: &FakeHost) -> Vec<String> {
    let names = counter_names(catalog);
    host.counted.iter().map(|slot| names[*slot].clone()).collect()
}

#[test]
fn forwards_with_route_version_and_path_set() {
    let c = demo();
    let (verdict, host) = run(&c, &[(":method", b"POST"), (":path", b"/v2/register"), ("x-meshver-route", b"evil")]);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(host.removed, ["x-meshver-route"]);
    assert_eq!(host.header("x-meshver-route").as_deref(), Some("user-v2"));
    assert_eq!(host.header("x-api-version").as_deref(), Some("2"));
    assert_eq!(host.header(":path").as_deref(), Some("/register"));
    assert!(host.answer.is_none());
    assert_eq!(counted(&c, &host), ["meshver.user.forwarded"]);
}

#[test]
fn answers_problem_json_or_grpc_status() {
    let c = demo();
    let (verdict, host) = run(&c, &[(":path", b"/register"), ("x-api-version", b"9")]);
    assert_eq!(verdict, Verdict::Answered);
    let answer = host.answer.as_ref().unwrap();
    assert_eq!((answer.status, answer.grpc_status), (400, None));
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["type"], "urn:meshver:problem:unsupported-version");
    assert!(answer.headers.contains(&("content-type", "application/problem+json".to_owned())));
    assert!(host.set.is_empty(), "a refused request is not rewritten: {:?}", host.set);
    assert_eq!(counted(&c, &host), ["meshver.user.rejected.unsupported_version"]);

    let (_, host) = run(&c, &[(":path", b"/acme.user.v9.UserService/Register"), ("content-type", b"application/grpc")]);
    let answer = host.answer.as_ref().unwrap();
    assert_eq!((answer.status, answer.grpc_status), (200, Some(12)));
    assert!(answer.headers.contains(&("meshver-problem-type", "urn:meshver:problem:unsupported-version".to_owned())));
}

#[test]
fn leaves_unmatched_and_unreadable_requests_alone() {
    let c = demo();
    let (verdict, host) = run(&c, &[(":path", b"/elsewhere"), ("x-meshver-sticky", b"1")]);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(host.removed, ["x-meshver-sticky"], "owned headers are removed on every request");
    assert!(host.set.is_empty() && host.answer.is_none());
    assert_eq!(counted(&c, &host), ["meshver.unmatched"]);

    for mut host in [
        FakeHost { refuse_headers: true, ..FakeHost::default() },
        FakeHost { raw_header_map: Some(vec![9, 0, 0, 0, 1]), ..FakeHost::default() },
    ] {
        assert_eq!(on_request_headers(&mut host, &c), Verdict::Continue);
        assert!(host.set.is_empty() && host.removed.is_empty() && host.answer.is_none() && host.counted.is_empty());
    }
}
