//! Contracts and their schema subset: the input is a schema, a NUL, a second schema (the
//! next minor's), a NUL and a body. Both compile inside a catalog as contracts for 1 and 1.1;
//! when it loads, the compatibility check compares them and the body is checked against each.

use meshver::config::load;
use meshver::data::{compatibility, BodyError};
use serde_json::{json, Value};

pub fn check(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(first), Some(second)) = (parts.next(), parts.next()) else { return };
    let body = parts.next().unwrap_or_default();
    let (Ok(first), Ok(second)) = (serde_json::from_slice::<Value>(first), serde_json::from_slice::<Value>(second))
    else {
        return;
    };
    let catalog = json!({"services": [{
        "name": "s", "match": {"path_prefixes": ["/"]}, "default_version": "1",
        "deployments": [{"version": "1.0.0"}, {"version": "1.1.0"}],
        "data": {"contracts": [{"version": "1", "schema": first}, {"version": "1.1", "schema": second}]}
    }]});
    let Ok(catalog) = load(catalog.to_string().as_bytes()) else { return };
    let Some(data) = catalog.services.first().and_then(|s| s.data.as_ref()) else { return };
    for finding in compatibility(data) {
        assert!(finding.pointer.is_empty() || finding.pointer.starts_with('/'), "{finding}");
    }
    let parsed = serde_json::from_slice::<Value>(body);
    for version in ["1", "1.1"] {
        let Some(plan) = data.body_plan(version, b"POST", b"/") else { panic!("contract {version} applies") };
        match plan.request(body) {
            Ok(Some(_)) => panic!("a contract alone never rewrites a body"),
            Ok(None) => assert!(parsed.is_ok()),
            Err(BodyError::Malformed(_)) => assert!(parsed.is_err() || body.trim_ascii().is_empty()),
            Err(BodyError::Contract(violations)) => {
                assert!(parsed.is_ok() && !violations.is_empty() && violations.len() <= 65);
            }
        }
    }
}
