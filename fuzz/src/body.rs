//! The data engine's body changes: the input's first byte picks a request (version, method,
//! path) to catalogs/body.json's service, whose chain 1 → 2 → 3 uses every op and whose
//! contracts use every schema keyword; the rest is the body, sent up as a request and back
//! down as a response.

use super::fixtures::body;
use meshver::data::{BodyError, BodyPlan};
use serde_json::Value;

/// Requested version, method and path: served versions along the chain (steps limited by
/// method and path, or not), deployed ones, and each contract.
const REQUESTS: &[(&str, &[u8], &[u8])] = &[
    ("1", b"POST", b"/accounts"),
    ("1", b"POST", b"/register/x"),
    ("1", b"GET", b"/accounts"),
    ("1.2", b"PUT", b"/accounts"),
    ("2", b"POST", b"/accounts"),
    ("2.0.1", b"DELETE", b"/other"),
    ("3", b"POST", b"/accounts"),
    ("3.1", b"POST", b"/accounts/7"),
];

pub fn check(data: &[u8]) {
    let Some((&pick, body_bytes)) = data.split_first() else { return };
    let Some(service) = body().services.first() else { return };
    let Some(service_data) = &service.data else { return };
    let (version, method, path) = REQUESTS.get(usize::from(pick) % REQUESTS.len()).copied().unwrap_or(REQUESTS[0]);
    let Some(plan) = service_data.body_plan(version, method, path) else { return };
    // The compact form a second filter instance reads back is this plan.
    assert_eq!(service_data.decode_plan(&plan.id().encode()).map(|p| p.id()), Some(plan.id()));
    request(&plan, body_bytes);
    response(&plan, body_bytes);
}

fn request(plan: &BodyPlan<'_>, body: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(body);
    match plan.request(body) {
        Ok(Some(new)) => written_json(&new),
        Ok(None) => {}
        Err(BodyError::Malformed(detail)) => {
            assert!(parsed.is_err() || body.trim_ascii().is_empty(), "a JSON body refused as malformed: {detail}")
        }
        Err(BodyError::Contract(violations)) => {
            let value = parsed.expect("only JSON breaks a contract");
            assert!(!violations.is_empty() && violations.len() <= 65);
            for violation in &violations {
                // Each names a value of the body, or a missing member of one that is there.
                let parent = violation.pointer.rfind('/').map_or("", |at| &violation.pointer[..at]);
                assert!(
                    violation.more > 0
                        || value.pointer(&violation.pointer).is_some()
                        || value.pointer(parent).is_some(),
                    "{violation} in {value}"
                );
            }
        }
    }
}

fn response(plan: &BodyPlan<'_>, body: &[u8]) {
    match plan.response(body) {
        Ok(Some(new)) => written_json(&new),
        Ok(None) => {}
        Err(BodyError::Malformed(_)) => assert!(serde_json::from_slice::<Value>(body).is_err()),
        Err(BodyError::Contract(_)) => panic!("a response has no contract"),
    }
}

/// A body the engine writes is compact JSON, and writing it again changes nothing.
fn written_json(bytes: &[u8]) {
    let value: Value = serde_json::from_slice(bytes).expect("the engine writes JSON");
    assert_eq!(serde_json::to_vec(&value).ok().as_deref(), Some(bytes));
}
