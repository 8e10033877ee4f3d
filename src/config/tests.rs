//! Table-driven tests of loading: every mistake is refused with its JSON path.

use super::*;

/// A valid service, to be broken one field at a time.
const GOOD: &str = r#"{"name":"user","match":{"path_prefixes":["/register"]},"default_version":"1",
    "deployments":[{"version":"1.4.0","weight":100},{"version":"2.0.3","weight":90},{"version":"2.1.0","weight":10}]}"#;

fn with_service(patch: &str) -> String {
    let mut service: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let patch: serde_json::Value = serde_json::from_str(patch).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        service[k] = v.clone();
    }
    format!(r#"{{"services":[{service}]}}"#)
}

fn paths(json: &str) -> Vec<String> {
    match load(json.as_bytes()) {
        Ok(_) => vec![],
        Err(errors) => errors.0.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn loads_the_demo_catalog() {
    let catalog = load(include_bytes!("../../examples/catalog.json")).unwrap();
    let user = &catalog.services[0];
    assert_eq!(user.supported_versions, ["1.4.0", "2.0.3", "2.1.0"]);
    assert_eq!(
        user.lines.iter().map(|l| (l.major, l.route.as_str(), l.size)).collect::<Vec<_>>(),
        [(1, "user-v1", 1), (2, "user-v2", 2)]
    );
    assert_eq!(user.deployments[2].route, "user-2.1.0");
    assert_eq!(catalog.route_header, "x-meshver-route");
}

#[test]
fn refuses_mistakes_with_their_path() {
    let cases: Vec<(String, &[&str])> = vec![
        (String::new(), &["$"]),
        ("[]".into(), &["$"]),
        ("{}".into(), &["$"]),
        (r#"{"services":[]}"#.into(), &["$.services"]),
        (r#"{"services":[]} x"#.into(), &["$"]),
        (r#"{"services":[],"extra":1}"#.into(), &["$.extra"]),
        (r#"{"route_header":"x-route","services":[]}"#.into(), &["$.route_header", "$.services"]),
        (with_service(r#"{"name":"User_1"}"#), &["$.services[0].name"]),
        (with_service(r#"{"colour":"red"}"#), &["$.services[0].colour"]),
        (with_service(r#"{"match":{}}"#), &["$.services[0].match"]),
        (with_service(r#"{"match":{"path_prefixes":["register"]}}"#), &["$.services[0].match.path_prefixes[0]"]),
        (with_service(r#"{"match":{"hosts":["bad host"]}}"#), &["$.services[0].match.hosts[0]"]),
        (with_service(r#"{"match":{"paths":["/x"]}}"#), &["$.services[0].match.paths"]),
        (with_service(r#"{"deployments":[]}"#), &["$.services[0].deployments", "$.services[0].default_version"]),
        (
            with_service(r#"{"deployments":[{"version":"1.4"}]}"#),
            &["$.services[0].deployments[0].version", "$.services[0].default_version"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.4.0"},{"version":"1.4.0"}]}"#),
            &["$.services[0].deployments[1].version"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.4.0","weight":101}]}"#),
            &["$.services[0].deployments[0].weight", "$.services[0].deployments"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.4.0","weight":"x"}]}"#),
            &["$.services[0].deployments[0].weight"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.0.0","weight":50},{"version":"1.1.0"}]}"#),
            &["$.services[0].deployments"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.0.0","route":"a b"}]}"#),
            &["$.services[0].deployments[0].route"],
        ),
        (
            with_service(r#"{"deployments":[{"version":"1.0.0","route":"k"},{"version":"1.1.0","route":"k"}]}"#),
            &["$.services[0].deployments[1].route"],
        ),
        (with_service(r#"{"lines":{"7":{"route":"x"}}}"#), &["$.services[0].lines.7"]),
        (with_service(r#"{"lines":{"2":{"route":"user-1.4.0"}}}"#), &["$.services[0].lines.2.route"]),
        (with_service(r#"{"default_version":"3"}"#), &["$.services[0].default_version"]),
        (with_service(r#"{"default_version":"newest"}"#), &["$.services[0].default_version"]),
        (with_service(r#"{"sources":["header","cookie"]}"#), &["$.services[0].sources[1]"]),
        (with_service(r#"{"sources":["header","header"]}"#), &["$.services[0].sources[1]"]),
        (with_service(r#"{"version_header":"x-meshver-version"}"#), &["$.services[0].version_header"]),
        (with_service(r#"{"version_header":"X-Api-Version"}"#), &["$.services[0].version_header"]),
        (with_service(r#"{"query_param":"a b"}"#), &["$.services[0].query_param"]),
        (with_service(r#"{"accept_vendor":"Acme!"}"#), &["$.services[0].accept_vendor"]),
        (with_service(r#"{"rewrite":{"strip":true}}"#), &["$.services[0].rewrite.strip"]),
        (
            format!(r#"{{"services":[{GOOD},{GOOD}]}}"#),
            &[
                "$.services[1].name",
                "$.services[1].deployments[0].route",
                "$.services[1].deployments[1].route",
                "$.services[1].deployments[2].route",
                "$.services[1].lines.1.route",
                "$.services[1].lines.2.route",
            ],
        ),
    ];
    for (json, want) in &cases {
        assert_eq!(paths(json), *want, "{json}");
    }
}

#[test]
fn messages_say_what_is_wrong() {
    let errors = load(with_service(r#"{"colour":"red"}"#).as_bytes()).unwrap_err();
    let text = errors.to_string();
    assert!(text.starts_with("$.services[0].colour: unknown field `colour`"), "{text}");
    let errors = load(with_service(r#"{"default_version":"3"}"#).as_bytes()).unwrap_err();
    assert_eq!(errors.to_string(), "$.services[0].default_version: no deployment serves the default version 3");
}

#[test]
fn accepts_minimal_and_full_forms() {
    assert!(load(with_service("{}").as_bytes()).is_ok());
    assert!(load(
        with_service(r#"{"sources":[],"default_version":"latest","match":{"hosts":["*.example.com"]}}"#).as_bytes()
    )
    .is_ok());
    let rc = load(
        with_service(r#"{"deployments":[{"version":"1.0.0-rc.1+build.5"}],"default_version":"reject"}"#).as_bytes(),
    );
    assert!(rc.is_ok(), "{rc:?}");
}

#[test]
fn caller_claims_bind_to_spiffe_ids() {
    let with_binding = |trust: bool, ids: &str| {
        let service: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        format!(r#"{{"services":[{service}],"trust_caller_headers":{trust},"caller_spiffe_ids":{ids}}}"#)
    };
    let order = r#"{"order":["spiffe://cluster.local/ns/shop/sa/order"]}"#;
    let catalog = load(with_binding(true, order).as_bytes()).unwrap();
    let binding = catalog.claim_binding().unwrap();
    assert_eq!(binding.check("order", Some(b"spiffe://cluster.local/ns/shop/sa/order")), Ok(()));
    // Callers need not be services of the catalog; an empty table binds every claim to nobody.
    assert!(load(with_binding(true, r#"{"billing":["spiffe://td/billing"]}"#).as_bytes()).is_ok());
    assert!(load(with_binding(true, "{}").as_bytes()).unwrap().claim_binding().is_some());
    let cases: Vec<(String, &[&str])> = vec![
        (with_binding(false, order), &["$.caller_spiffe_ids"]),
        (with_binding(true, r#"{"Order":["spiffe://td/order"]}"#), &["$.caller_spiffe_ids.Order"]),
        (with_binding(true, r#"{"order":[]}"#), &["$.caller_spiffe_ids.order"]),
        (with_binding(true, r#"{"order":"spiffe://td/order"}"#), &["$.caller_spiffe_ids.order"]),
        (
            with_binding(true, r#"{"order":["spiffe://td/order","order","spiffe://td/order"]}"#),
            &["$.caller_spiffe_ids.order[1]", "$.caller_spiffe_ids.order[2]"],
        ),
        (with_binding(true, r#"{"order":["spiffe://TD/order"]}"#), &["$.caller_spiffe_ids.order[0]"]),
    ];
    for (json, want) in &cases {
        assert_eq!(paths(json), *want, "{json}");
    }
    let text = load(with_binding(true, r#"{"order":["https://td/order"]}"#).as_bytes()).unwrap_err().to_string();
    assert_eq!(
        text,
        "$.caller_spiffe_ids.order[0]: \"https://td/order\" is not a SPIFFE ID \
         (like spiffe://cluster.local/ns/shop/sa/order): it does not start with spiffe://"
    );
    // A caller's own sidecar reads no claims: nothing there to bind.
    let sidecar = with_binding(true, order).replacen('{', r#"{"caller":{"service":"user","version":"1.4.0"},"#, 1);
    assert!(load(sidecar.as_bytes()).unwrap().claim_binding().is_none());
}
