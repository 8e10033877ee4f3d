//! Counters the filter keeps, one per service and outcome, with names defined once here.
//!
//! Envoy shows a wasm counter `meshver.user.forwarded` as the stat
//! `wasmcustom.meshver.user.forwarded`; Envoy 1.40's `/stats/prometheus` names it
//! `meshver_user_forwarded`.
//! Rejections count under the problem kind: `meshver.user.rejected.unsupported_version`.
//! Requests no service matched count under `meshver.unmatched`.

use crate::config::Catalog;
use crate::problem::ProblemKind;
use crate::resolve::{Outcome, Plan};

/// Outcomes counted per service: forwarded, then one per problem kind.
const PER_SERVICE: usize = 1 + ProblemKind::ALL.len();

/// Every counter name, in slot order; the last is `meshver.unmatched`.
pub fn counter_names(catalog: &Catalog) -> Vec<String> {
    let mut names = Vec::with_capacity(catalog.services.len() * PER_SERVICE + 1);
    for service in &catalog.services {
        names.push(format!("meshver.{}.forwarded", service.name));
        for kind in ProblemKind::ALL {
            names.push(format!("meshver.{}.rejected.{}", service.name, kind.slug().replace('-', "_")));
        }
    }
    names.push("meshver.unmatched".to_owned());
    names
}

/// The slot of a service's forwarded requests.
pub fn forwarded_slot(catalog: &Catalog, service: usize) -> usize {
    service_slot(catalog, service, 0)
}

/// The slot of a service's rejections of one kind.
pub fn problem_slot(catalog: &Catalog, service: usize, kind: ProblemKind) -> usize {
    let outcome = ProblemKind::ALL.iter().position(|k| *k == kind).map_or(PER_SERVICE, |at| 1 + at);
    service_slot(catalog, service, outcome)
}

/// A service's outcome slot; `meshver.unmatched` for a service or outcome out of range.
fn service_slot(catalog: &Catalog, service: usize, outcome: usize) -> usize {
    let unmatched = catalog.services.len() * PER_SERVICE;
    if service < catalog.services.len() && outcome < PER_SERVICE {
        service * PER_SERVICE + outcome
    } else {
        unmatched
    }
}

/// The slot (index into `counter_names`) a decided request counts in; `None` for a request
/// marked for the body filter, which counts it once its body is decided (one outcome per
/// request).
pub fn slot(catalog: &Catalog, plan: &Plan<'_>) -> Option<usize> {
    let Some(service) = plan.service else {
        return Some(catalog.services.len() * PER_SERVICE);
    };
    match &plan.outcome {
        Outcome::Reject(problem) => Some(problem_slot(catalog, service, problem.kind)),
        Outcome::Forward(forward) if forward.marks_body() => None,
        Outcome::Forward(_) | Outcome::PassThrough => Some(forwarded_slot(catalog, service)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::request::Request;
    use crate::resolve::decide;

    #[test]
    fn every_outcome_has_its_named_counter() {
        let catalog = config::load(include_bytes!("../examples/catalog.json")).unwrap();
        let names = counter_names(&catalog);
        assert_eq!(names.len(), 2 * 14 + 1);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a str);
        let cases: &[Case] = &[
            ("/register", &[], "meshver.user.forwarded"),
            ("/register", &[("x-api-version", b"9")], "meshver.user.rejected.unsupported_version"),
            ("/v1/order", &[("x-api-version", b"2")], "meshver.order.rejected.version_conflict"),
            ("/order", &[("x-api-version", b"x")], "meshver.order.rejected.malformed_version"),
            ("/elsewhere", &[], "meshver.unmatched"),
        ];
        for (path, extra, want) in cases {
            let mut headers: Vec<(&[u8], &[u8])> = vec![(b":path", path.as_bytes())];
            headers.extend(extra.iter().map(|(n, v)| (n.as_bytes(), *v)));
            let plan = decide(&catalog, &Request::new(&headers), 0);
            assert_eq!(names[slot(&catalog, &plan).unwrap()], *want, "{path}");
        }
    }
}
