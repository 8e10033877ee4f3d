//! What holds for every decision, whatever the request: the invariants each target that
//! decides requests checks.

use meshver::config::{Catalog, OWNED_HEADER_PREFIX};
use meshver::header_map::Header;
use meshver::request::Request;
use meshver::resolve::{decide, Outcome, Plan};
use meshver::version::RequestedVersion;

/// Decides `headers` in `catalog` and checks the plan; the plan, for more checks.
pub fn decided<'c>(catalog: &'c Catalog, headers: &[Header<'_>]) -> Plan<'c> {
    let request = Request::new(headers);
    let plan = decide(catalog, &request, super::fixtures::NOW);
    check(catalog, &request, &plan);
    plan
}

/// Headers as the host hands them, from owned names and borrowed values.
pub fn borrowed<'a>(headers: &'a [(Vec<u8>, &'a [u8])]) -> Vec<Header<'a>> {
    headers.iter().map(|(name, value)| (name.as_slice(), *value)).collect()
}

fn check(catalog: &Catalog, request: &Request<'_>, plan: &Plan<'_>) {
    // Every client header the filter owns goes, and nothing else.
    let owned: Vec<String> = request
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with(OWNED_HEADER_PREFIX.as_bytes()))
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect();
    assert_eq!(plan.remove_headers, owned);
    match &plan.outcome {
        Outcome::PassThrough => assert_eq!(plan.service, None),
        Outcome::Forward(forward) => {
            let service = plan.service.and_then(|i| catalog.services.get(i)).expect("a forward names its service");
            assert_eq!(forward.service, service.name);
            let routes = service.deployments.iter().map(|d| &d.route).chain(service.lines.iter().map(|l| &l.route));
            assert!(
                routes.into_iter().any(|r| r == forward.route),
                "route {} is no key of {}",
                forward.route,
                service.name
            );
            for (name, value) in &forward.set_headers {
                // What the filter writes is a valid header value, whatever the client sent:
                // visible ASCII and spaces, nothing a proxy could split a header at.
                assert!(value.iter().all(|b| (0x20..0x7f).contains(b)), "{name}: {:?}", String::from_utf8_lossy(value));
                if *name == service.version_header {
                    assert!(RequestedVersion::parse(value).is_ok(), "{name}: {:?}", String::from_utf8_lossy(value));
                }
            }
            if let Some(path) = &forward.path {
                assert!(path.starts_with(b"/"), "rewritten path {:?}", String::from_utf8_lossy(path));
            }
        }
        Outcome::Reject(problem) => {
            assert!(plan.service.is_some());
            let body: serde_json::Value = serde_json::from_slice(&problem.body()).expect("problem+json is JSON");
            assert_eq!(body["status"], problem.status());
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
            for grpc in [false, true] {
                let answer = problem.answer(grpc);
                for (name, value) in &answer.headers {
                    assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{name}: {value:?}");
                }
            }
        }
    }
}
