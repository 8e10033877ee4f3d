//! Table-driven tests of the data half: ops, chains, plans, contracts, config errors, compat.

use super::*;
use serde_json::{json, Value};

/// A request's version, method and path, and which contract it gets.
type Request<'a> = (&'a str, &'a [u8], &'a [u8], Option<&'a str>);
/// A finding's kind, config path (below the newer schema) and body pointer.
type Expected<'a> = (FindingKind, &'a str, &'a str);

fn deployed(versions: &[&str]) -> Vec<Version> {
    versions.iter().map(|v| Version::parse(v).unwrap()).collect()
}

fn config(value: Value) -> model::DataConfig {
    serde_json::from_value(value).unwrap()
}

fn load(value: Value, versions: &[&str]) -> Result<ServiceData, Vec<DataError>> {
    compile(config(value), &deployed(versions))
}

fn ok(value: Value, versions: &[&str]) -> ServiceData {
    load(value, versions).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Applies one change's request ops to a body, through a one-step chain 1 → 2.
fn upgrade(ops: Value, body: Value) -> Value {
    let data =
        ok(json!({"served_by_successor": ["1"], "changes": [{"from": "1", "to": "2", "request": ops}]}), &["2.0.0"]);
    let plan = data.body_plan("1", b"POST", b"/x").unwrap();
    let bytes = serde_json::to_vec(&body).unwrap();
    match plan.request(&bytes).unwrap() {
        Some(new) => serde_json::from_slice(&new).unwrap(),
        None => body,
    }
}

#[test]
fn ops_change_bodies() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "rename",
            json!([{"op": "rename", "from": "/name", "to": "/full_name"}]),
            json!({"name": "Ada", "x": 1}),
            json!({"full_name": "Ada", "x": 1}),
        ),
        (
            "rename missing source",
            json!([{"op": "rename", "from": "/name", "to": "/full_name"}]),
            json!({"x": 1}),
            json!({"x": 1}),
        ),
        (
            "rename replaces",
            json!([{"op": "rename", "from": "/a", "to": "/b"}]),
            json!({"a": 1, "b": 2}),
            json!({"b": 1}),
        ),
        (
            "rename nested, creating objects",
            json!([{"op": "rename", "from": "/user/name", "to": "/profile/names/full"}]),
            json!({"user": {"name": "Ada", "id": 7}}),
            json!({"user": {"id": 7}, "profile": {"names": {"full": "Ada"}}}),
        ),
        (
            "rename up a level",
            json!([{"op": "rename", "from": "/address/city", "to": "/city"}]),
            json!({"address": {"city": "Oslo"}}),
            json!({"address": {}, "city": "Oslo"}),
        ),
        (
            "rename blocked by a non-object",
            json!([{"op": "rename", "from": "/a", "to": "/b/c"}]),
            json!({"a": 1, "b": "text"}),
            json!({"a": 1, "b": "text"}),
        ),
        (
            "rename over each element",
            json!([{"op": "rename", "from": "/items/*/qty", "to": "/items/*/quantity"}]),
            json!({"items": [{"qty": 1}, {"qty": 2, "sku": "a"}, {"sku": "b"}, 5]}),
            json!({"items": [{"quantity": 1}, {"quantity": 2, "sku": "a"}, {"sku": "b"}, 5]}),
        ),
        (
            "rename nested in each element",
            json!([{"op": "rename", "from": "/orders/*/lines/*/n", "to": "/orders/*/lines/*/meta/count"}]),
            json!({"orders": [{"lines": [{"n": 1}]}, {"lines": [{"n": 2}, {}]}]}),
            json!({"orders": [{"lines": [{"meta": {"count": 1}}]}, {"lines": [{"meta": {"count": 2}}, {}]}]}),
        ),
        (
            "rename by array index",
            json!([{"op": "rename", "from": "/tags/0", "to": "/first_tag"}]),
            json!({"tags": ["a", "b"]}),
            json!({"tags": ["b"], "first_tag": "a"}),
        ),
        (
            "rename of a member with escapes",
            json!([{"op": "rename", "from": "/a~1b", "to": "/c~0d"}]),
            json!({"a/b": 1}),
            json!({"c~d": 1}),
        ),
        (
            "add when absent",
            json!([{"op": "add", "path": "/country", "value": "NL"}]),
            json!({"name": "Ada"}),
            json!({"name": "Ada", "country": "NL"}),
        ),
        (
            "add keeps a present value",
            json!([{"op": "add", "path": "/country", "value": "NL"}]),
            json!({"country": "DE"}),
            json!({"country": "DE"}),
        ),
        (
            "add keeps a present null",
            json!([{"op": "add", "path": "/country", "value": "NL"}]),
            json!({"country": null}),
            json!({"country": null}),
        ),
        (
            "add nested, creating objects",
            json!([{"op": "add", "path": "/prefs/lang", "value": {"code": "en"}}]),
            json!({}),
            json!({"prefs": {"lang": {"code": "en"}}}),
        ),
        (
            "add to each element",
            json!([{"op": "add", "path": "/items/*/currency", "value": "EUR"}]),
            json!({"items": [{}, {"currency": "USD"}]}),
            json!({"items": [{"currency": "EUR"}, {"currency": "USD"}]}),
        ),
        ("remove", json!([{"op": "remove", "path": "/legacy"}]), json!({"legacy": true, "x": 1}), json!({"x": 1})),
        ("remove missing", json!([{"op": "remove", "path": "/legacy"}]), json!({"x": 1}), json!({"x": 1})),
        (
            "remove nested in each element",
            json!([{"op": "remove", "path": "/items/*/secret"}]),
            json!({"items": [{"secret": 1, "a": 2}, {"a": 3}]}),
            json!({"items": [{"a": 2}, {"a": 3}]}),
        ),
        (
            "remove an array element",
            json!([{"op": "remove", "path": "/tags/1"}]),
            json!({"tags": ["a", "b", "c"]}),
            json!({"tags": ["a", "c"]}),
        ),
        (
            "map",
            json!([{"op": "map", "path": "/status", "values": {"active": "ACTIVE", "gone": "DELETED"}}]),
            json!({"status": "active"}),
            json!({"status": "ACTIVE"}),
        ),
        (
            "map leaves other values",
            json!([{"op": "map", "path": "/status", "values": {"active": "ACTIVE"}}]),
            json!({"status": "paused"}),
            json!({"status": "paused"}),
        ),
        (
            "map leaves non-strings",
            json!([{"op": "map", "path": "/status", "values": {"1": "ACTIVE"}}]),
            json!({"status": 1}),
            json!({"status": 1}),
        ),
        (
            "map each element of an array",
            json!([{"op": "map", "path": "/roles/*", "values": {"admin": "ADMIN"}}]),
            json!({"roles": ["admin", "user"]}),
            json!({"roles": ["ADMIN", "user"]}),
        ),
        (
            "map nested in each element",
            json!([{"op": "map", "path": "/items/*/kind", "values": {"a": "A"}}]),
            json!({"items": [{"kind": "a"}, {"kind": "b"}]}),
            json!({"items": [{"kind": "A"}, {"kind": "b"}]}),
        ),
        (
            "wrap a field",
            json!([{"op": "wrap", "path": "/amount", "into": "value"}]),
            json!({"amount": 5}),
            json!({"amount": {"value": 5}}),
        ),
        (
            "wrap the body",
            json!([{"op": "wrap", "path": "", "into": "data"}]),
            json!({"a": 1}),
            json!({"data": {"a": 1}}),
        ),
        ("wrap missing", json!([{"op": "wrap", "path": "/amount", "into": "value"}]), json!({"x": 1}), json!({"x": 1})),
        (
            "wrap each element",
            json!([{"op": "wrap", "path": "/ids/*", "into": "id"}]),
            json!({"ids": [1, 2]}),
            json!({"ids": [{"id": 1}, {"id": 2}]}),
        ),
        (
            "unwrap a field",
            json!([{"op": "unwrap", "path": "/amount", "from": "value"}]),
            json!({"amount": {"value": 5, "c": "EUR"}}),
            json!({"amount": 5}),
        ),
        ("unwrap the body", json!([{"op": "unwrap", "path": "", "from": "data"}]), json!({"data": [1]}), json!([1])),
        (
            "unwrap without the member",
            json!([{"op": "unwrap", "path": "/amount", "from": "value"}]),
            json!({"amount": {"v": 5}}),
            json!({"amount": {"v": 5}}),
        ),
        (
            "unwrap a non-object",
            json!([{"op": "unwrap", "path": "/amount", "from": "value"}]),
            json!({"amount": 5}),
            json!({"amount": 5}),
        ),
        (
            "ops run in order",
            json!([{"op": "rename", "from": "/a", "to": "/b"}, {"op": "wrap", "path": "/b", "into": "v"}, {"op": "add", "path": "/a", "value": 0}]),
            json!({"a": 1}),
            json!({"a": 0, "b": {"v": 1}}),
        ),
        (
            "a non-object body passes",
            json!([{"op": "rename", "from": "/a", "to": "/b"}, {"op": "add", "path": "/c", "value": 1}]),
            json!([1, 2]),
            json!([1, 2]),
        ),
        (
            "a string body passes",
            json!([{"op": "remove", "path": "/a"}, {"op": "map", "path": "/a", "values": {}}]),
            json!("text"),
            json!("text"),
        ),
    ];
    for (name, ops, body, want) in cases {
        assert_eq!(upgrade(ops, body), want, "{name}");
    }
}

/// Two steps, 1 → 2 → 3, with 3 deployed: the chain both ways.
fn two_steps() -> Value {
    json!({
        "served_by_successor": ["1", "2"],
        "changes": [
            {"from": "2", "to": "3",
             "request": [{"op": "wrap", "path": "/full_name", "into": "text"}, {"op": "add", "path": "/tier", "value": "free"}],
             "response": [{"op": "unwrap", "path": "/full_name", "from": "text"}, {"op": "remove", "path": "/tier"}]},
            {"from": "1", "to": "2",
             "request": [{"op": "rename", "from": "/name", "to": "/full_name"}, {"op": "map", "path": "/status", "values": {"on": "ACTIVE"}}],
             "response": [{"op": "rename", "from": "/full_name", "to": "/name"}, {"op": "map", "path": "/status", "values": {"ACTIVE": "on"}}]}
        ]
    })
}

#[test]
fn chains_upgrade_requests_and_downgrade_responses() {
    let data = ok(two_steps(), &["3.0.0", "3.1.0"]);
    let cases: &[(&str, Value, Value, Value, Value)] = &[
        (
            "1",
            json!({"name": "Ada", "status": "on"}),
            json!({"full_name": {"text": "Ada"}, "status": "ACTIVE", "tier": "free"}),
            json!({"full_name": {"text": "Ada"}, "status": "ACTIVE", "tier": "gold", "id": 1}),
            json!({"name": "Ada", "status": "on", "id": 1}),
        ),
        (
            "2",
            json!({"full_name": "Ada", "status": "on"}),
            json!({"full_name": {"text": "Ada"}, "status": "on", "tier": "free"}),
            json!({"full_name": {"text": "Ada"}, "status": "ACTIVE", "tier": "gold"}),
            json!({"full_name": "Ada", "status": "ACTIVE"}),
        ),
    ];
    for (version, request, upgraded, response, downgraded) in cases {
        let plan = data.body_plan(version, b"POST", b"/register").unwrap();
        assert_eq!(plan.target().map(ToString::to_string).as_deref(), Some("3"), "{version}");
        assert!(plan.checks_request() && plan.has_response_steps());
        let up = plan.request(&serde_json::to_vec(request).unwrap()).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&up).unwrap(), *upgraded, "{version} up");
        let down = plan.response(&serde_json::to_vec(response).unwrap()).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&down).unwrap(), *downgraded, "{version} down");
    }
    // 3 has deployments: nothing to do.
    assert!(data.body_plan("3", b"POST", b"/register").is_none());
    assert!(data.body_plan("3.1", b"POST", b"/register").is_none());
}

#[test]
fn successors_serve_versions_without_deployments() {
    let data = ok(
        json!({"served_by_successor": ["1", "2.1"], "changes": [
            {"from": "1", "to": "2"}, {"from": "2.1", "to": "3"}]}),
        &["2.0.3", "3.0.0"],
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("1", Some("2")),
        ("1.4", Some("2")),
        ("1.4.2", Some("2")),
        ("2", None),
        ("2.0", None),
        ("2.1", Some("3")),
        ("2.1.7", Some("3")),
        ("2.2", None),
        ("3", None),
        ("4", None),
    ];
    for (requested, want) in cases {
        let requested = crate::version::RequestedVersion::parse_str(requested).unwrap();
        let got = data.successor_for(&requested).map(ToString::to_string);
        assert_eq!(got.as_deref(), *want, "{requested}");
    }
    // Steps with no ops make no body plan: routing alone serves.
    assert!(data.body_plan("1", b"POST", b"/").is_none());
}

#[test]
fn steps_apply_within_their_limits() {
    let data = ok(
        json!({"served_by_successor": ["1"], "changes": [
            {"from": "1", "to": "2", "methods": ["POST"], "path_prefixes": ["/register"],
             "request": [{"op": "rename", "from": "/a", "to": "/b"}]},
            {"from": "2", "to": "3", "methods": ["POST", "PUT"],
             "request": [{"op": "rename", "from": "/c", "to": "/d"}]}]}),
        &["3.0.0"],
    );
    let body = br#"{"a":1,"c":2}"#;
    let cases: &[(&[u8], &[u8], Option<&str>)] = &[
        (b"POST", b"/register", Some(r#"{"b":1,"d":2}"#)),
        (b"POST", b"/register/x?y=1", Some(r#"{"b":1,"d":2}"#)),
        (b"PUT", b"/register", Some(r#"{"a":1,"d":2}"#)),
        (b"POST", b"/login", Some(r#"{"a":1,"d":2}"#)),
        (b"POST", b"/x?/register", Some(r#"{"a":1,"d":2}"#)),
        (b"GET", b"/register", None),
        (b"post", b"/register", None),
    ];
    for (method, path, want) in cases {
        let plan = data.body_plan("1", method, path);
        let got = plan.map(|p| String::from_utf8(p.request(body).unwrap().unwrap()).unwrap());
        assert_eq!(got.as_deref(), *want, "{} {}", String::from_utf8_lossy(method), String::from_utf8_lossy(path));
    }
}

#[test]
fn bodies_that_are_not_json() {
    let data = ok(
        json!({"served_by_successor": ["1"], "changes": [
            {"from": "1", "to": "2", "request": [{"op": "remove", "path": "/a"}], "response": [{"op": "remove", "path": "/a"}]}],
            "contracts": [{"version": "1", "path_prefix": "/strict", "schema": {"type": "object"}}]}),
        &["2.0.0"],
    );
    let loose = data.body_plan("1", b"POST", b"/loose").unwrap();
    let strict = data.body_plan("1", b"POST", b"/strict").unwrap();
    for plan in [loose, strict] {
        assert!(matches!(plan.request(b"{\"a\":"), Err(BodyError::Malformed(_))));
        assert!(matches!(plan.request(b"{} x"), Err(BodyError::Malformed(_))));
        assert!(matches!(plan.response(b"nope"), Err(BodyError::Malformed(_))));
        assert_eq!(plan.response(b""), Ok(None));
    }
    // An empty request body passes without a contract, fails with one.
    assert_eq!(loose.request(b" "), Ok(None));
    assert!(matches!(strict.request(b""), Err(BodyError::Malformed(_))));
    // Nesting deeper than serde_json's limit is malformed, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(loose.request(deep.as_bytes()), Err(BodyError::Malformed(_))));
    assert!(matches!(strict.request(deep.as_bytes()), Err(BodyError::Malformed(_))));
    // A non-object body breaks an object contract at the root.
    let Err(BodyError::Contract(v)) = strict.request(b"[1]") else { panic!() };
    assert_eq!(v, [Violation { pointer: String::new(), message: "must be object, not array".into(), more: 0 }]);
}

fn contract(schema: Value) -> ServiceData {
    ok(json!({"contracts": [{"version": "2", "schema": schema}]}), &["2.0.0"])
}

/// Violations as `pointer: message` lines.
fn violations(schema: &Value, body: &Value) -> Vec<String> {
    let data = contract(schema.clone());
    let plan = data.body_plan("2", b"POST", b"/").unwrap();
    match plan.request(&serde_json::to_vec(body).unwrap()) {
        Ok(None) => vec![],
        Ok(Some(_)) => panic!("a contract alone must not rewrite"),
        Err(BodyError::Contract(v)) => v.into_iter().map(|v| format!("{}: {}", v.pointer, v.message)).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_keyword_passes_and_fails() {
    let cases: Vec<(Value, Value, &[&str])> = vec![
        (json!({"type": "object"}), json!({}), &[]),
        (json!({"type": "object"}), json!("x"), &[": must be object, not string"]),
        (json!({"type": ["string", "null"]}), json!(null), &[]),
        (json!({"type": ["string", "null"]}), json!(1), &[": must be string or null, not integer"]),
        (json!({"type": "integer"}), json!(1.0), &[]),
        (json!({"type": "integer"}), json!(1.5), &[": must be integer, not number"]),
        (json!({"type": "number"}), json!(3), &[]),
        (json!({"type": "boolean"}), json!(false), &[]),
        (json!({"type": "array"}), json!({}), &[": must be array, not object"]),
        (json!({"required": ["email", "age"]}), json!({"email": "a"}), &["/age: is required"]),
        (json!({"required": ["email"]}), json!({"email": null}), &[]),
        (
            json!({"properties": {"age": {"type": "integer"}}}),
            json!({"age": "9"}),
            &["/age: must be integer, not string"],
        ),
        (
            json!({"properties": {"a~b/c": {"type": "integer"}}}),
            json!({"a~b/c": "9"}),
            &["/a~0b~1c: must be integer, not string"],
        ),
        (
            json!({"properties": {"a": {}}, "additionalProperties": false}),
            json!({"a": 1, "b": 2}),
            &["/b: is not allowed: the contract lists no such property"],
        ),
        (json!({"properties": {"a": {}}, "additionalProperties": true}), json!({"a": 1, "b": 2}), &[]),
        (
            json!({"items": {"type": "string"}}),
            json!(["a", 1, "b", true]),
            &["/1: must be string, not integer", "/3: must be string, not boolean"],
        ),
        (json!({"items": {"required": ["qty"]}}), json!([{"qty": 1}, {}]), &["/1/qty: is required"]),
        (json!({"enum": ["a", 1]}), json!(1.0), &[]),
        (json!({"enum": ["a", 1]}), json!("b"), &[": must be one of \"a\" or 1"]),
        (json!({"const": {"k": [1]}}), json!({"k": [1.0]}), &[]),
        (json!({"const": 5}), json!(6), &[": must be 5"]),
        (json!({"minLength": 2}), json!("é"), &[": must be at least 2 characters long, not 1"]),
        (json!({"minLength": 2}), json!("éé"), &[]),
        (json!({"maxLength": 2}), json!("abc"), &[": must be at most 2 characters long, not 3"]),
        (json!({"minimum": 1}), json!(1), &[]),
        (json!({"minimum": 1}), json!(0.5), &[": must be at least 1, not 0.5"]),
        (json!({"maximum": 10}), json!(11), &[": must be at most 10, not 11"]),
        (json!({"exclusiveMinimum": 0}), json!(0), &[": must be greater than 0, not 0"]),
        (json!({"exclusiveMaximum": 10}), json!(10), &[": must be less than 10, not 10"]),
        (json!({"exclusiveMaximum": 10}), json!(9.99), &[]),
        (json!({"minItems": 1}), json!([]), &[": must have at least 1 items, not 0"]),
        (json!({"maxItems": 1}), json!([1, 2]), &[": must have at most 1 items, not 2"]),
        (json!({"minLength": 5, "minimum": 5, "minItems": 5}), json!(true), &[]),
        (
            json!({"title": "t", "description": "d", "$schema": "https://json-schema.org/draft/2020-12/schema", "examples": [1], "default": 1}),
            json!(1),
            &[],
        ),
        (
            json!({"type": "object", "required": ["email", "name"], "additionalProperties": false,
                   "properties": {"email": {"type": "string"}, "name": {"type": "string", "minLength": 1},
                                  "age": {"type": "integer", "minimum": 0},
                                  "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}}),
            json!({"name": "", "age": -1, "tags": ["a", "c"], "extra": 1}),
            &[
                "/email: is required",
                "/age: must be at least 0, not -1",
                "/extra: is not allowed: the contract lists no such property",
                "/name: must be at least 1 characters long, not 0",
                "/tags/1: must be one of \"a\" or \"b\"",
            ],
        ),
    ];
    for (schema, body, want) in cases {
        assert_eq!(violations(&schema, &body), want, "{schema} on {body}");
    }
}

#[test]
fn violations_are_capped() {
    let body = json!((0..200).collect::<Vec<_>>());
    let got = violations(&json!({"items": {"type": "string"}}), &body);
    assert_eq!(got.len(), schema::MAX_VIOLATIONS + 1);
    assert_eq!(got.last().unwrap(), ": breaks the contract in 136 more places");
}

#[test]
fn contracts_match_by_version_prefix_path_and_method() {
    let data = ok(
        json!({"contracts": [
            {"version": "2", "schema": {"const": "2"}},
            {"version": "2.1", "schema": {"const": "2.1"}},
            {"version": "2.1", "path_prefix": "/register", "methods": ["POST"], "schema": {"const": "2.1 register"}},
            {"version": "2.1.3", "schema": {"const": "2.1.3"}},
            {"version": "1", "methods": ["PUT"], "schema": {"const": "1 put"}},
            {"version": "1", "path_prefix": "/register", "schema": {"const": "1 register"}},
            {"version": "1", "path_prefix": "/register", "methods": ["GET"], "schema": {"const": "1 register get"}}]}),
        &["1.0.0", "2.1.3"],
    );
    let cases: &[Request] = &[
        ("2", b"POST", b"/register", Some("2")),
        ("2.0", b"POST", b"/register", Some("2")),
        ("2.2", b"POST", b"/x", Some("2")),
        ("2.1", b"POST", b"/x", Some("2.1")),
        ("2.1", b"POST", b"/register/now", Some("2.1 register")),
        ("2.1", b"PUT", b"/register", Some("2.1")),
        ("2.1.0", b"POST", b"/register", Some("2.1 register")),
        ("2.1.3", b"POST", b"/register", Some("2.1.3")),
        ("v2.1.3", b"POST", b"/register", Some("2.1.3")),
        ("1", b"PUT", b"/", Some("1 put")),
        ("1", b"POST", b"/", None),
        ("1", b"POST", b"/register", Some("1 register")),
        ("1", b"GET", b"/register", Some("1 register get")),
        ("3", b"POST", b"/", None),
        ("two", b"POST", b"/", None),
    ];
    for (version, method, path, want) in cases {
        let plan = data.body_plan(version, method, path);
        let which = plan.map(|p| match p.request(b"0") {
            Err(BodyError::Contract(v)) => {
                v.first().unwrap().message.trim_start_matches("must be ").trim_matches('"').to_owned()
            }
            other => panic!("{other:?}"),
        });
        assert_eq!(which.as_deref(), *want, "{version} {}", String::from_utf8_lossy(path));
    }
}

#[test]
fn a_contract_alone_keeps_the_bytes() {
    let data = contract(json!({"type": "object"}));
    let plan = data.body_plan("2", b"POST", b"/").unwrap();
    assert!(plan.checks_request() && !plan.has_response_steps() && plan.target().is_none());
    assert_eq!(plan.request(b"{ \"b\": 1,  \"a\": 2 }"), Ok(None));
    assert_eq!(plan.response(b"{\"x\":1}"), Ok(None));
    assert_eq!(plan.max_body_bytes(), DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn the_contract_checks_the_clients_body_before_the_upgrade() {
    let data = ok(
        json!({"served_by_successor": ["1"],
               "changes": [{"from": "1", "to": "2", "request": [{"op": "rename", "from": "/name", "to": "/full_name"}]}],
               "contracts": [{"version": "1", "schema": {"required": ["name"]}},
                             {"version": "2", "schema": {"required": ["full_name"]}}]}),
        &["2.0.0"],
    );
    let plan = data.body_plan("1", b"POST", b"/").unwrap();
    assert_eq!(plan.contract_version().map(ToString::to_string).as_deref(), Some("1"));
    assert_eq!(plan.request(br#"{"name":"Ada"}"#), Ok(Some(br#"{"full_name":"Ada"}"#.to_vec())));
    let Err(BodyError::Contract(v)) = plan.request(br#"{"full_name":"Ada"}"#) else { panic!() };
    assert_eq!(v[0].pointer, "/name");
}

#[test]
fn plans_travel_in_compact_form() {
    let data = ok(two_steps(), &["3.0.0"]);
    let plan = data.body_plan("1", b"POST", b"/").unwrap();
    let text = plan.id().encode();
    assert_eq!(text, "s0.m3.c-");
    let again = data.decode_plan(&text).unwrap();
    assert_eq!(again.id(), plan.id());
    assert_eq!(again.request(br#"{"name":"A"}"#), plan.request(br#"{"name":"A"}"#));
    for bad in ["", "s0.m3", "s0.m3.c-.x", "s9.m1.c-", "s0.m4.c-", "s0.m0.c-", "s-.m0.c0", "x0.m3.c-", "s0.mz.c-"] {
        assert!(data.decode_plan(bad).is_none(), "{bad}");
    }
    assert_eq!(PlanId::decode("s-.m0.c12").map(|p| p.encode()).as_deref(), Some("s-.m0.c12"));
}

/// Found by the fuzz target `body` (fuzz/): serde_json's default float reader is not
/// correctly rounded, so a rewritten body could carry a number a last digit off the client's,
/// and rewriting its own output changed it again.
#[test]
fn rewritten_numbers_are_the_clients_own() {
    let data = ok(
        json!({"served_by_successor": ["1"], "changes": [{"from": "1", "to": "2", "request": [{"op": "add", "path": "/x", "value": 1}]}]}),
        &["2.0.0"],
    );
    let plan = data.body_plan("1", b"POST", b"/").unwrap();
    let sent =
        ["1234567890123456278901234567890", "1.2345678901234564e+30", "0.30000000000000004", "2.2250738585072011e-308"];
    for number in sent {
        let body = format!(r#"{{"n":{number}}}"#);
        let rewritten = plan.request(body.as_bytes()).unwrap().unwrap();
        let value: Value = serde_json::from_slice(&rewritten).unwrap();
        // The nearest double to what the client sent (Rust's reader is correctly rounded).
        assert_eq!(
            value["n"].as_f64(),
            number.parse::<f64>().ok(),
            "{number} → {}",
            String::from_utf8_lossy(&rewritten)
        );
        assert_eq!(plan.request(&rewritten).unwrap().unwrap(), rewritten, "rewriting again changes nothing");
    }
}

#[test]
fn max_body_bytes_is_kept_and_bounded() {
    let data = ok(json!({"max_body_bytes": 10, "contracts": [{"version": "2", "schema": {}}]}), &["2.0.0"]);
    assert_eq!(data.max_body_bytes(), 10);
    assert_eq!(data.body_plan("2", b"GET", b"/").unwrap().max_body_bytes(), 10);
}

/// Every hard error, by path.
#[test]
fn refuses_mistakes_with_their_path() {
    let step = |request: Value| json!({"from": "1", "to": "2", "request": request});
    let cases: Vec<(&str, Value, &[&str])> = vec![
        ("max_body_bytes 0", json!({"max_body_bytes": 0}), &[".max_body_bytes"]),
        ("max_body_bytes too big", json!({"max_body_bytes": 16777217}), &[".max_body_bytes"]),
        ("bad from", json!({"changes": [{"from": "one", "to": "2"}]}), &[".changes[0].from"]),
        ("patch in to", json!({"changes": [{"from": "1", "to": "2.0.1"}]}), &[".changes[0].to"]),
        ("to itself", json!({"changes": [{"from": "2", "to": "2.0"}]}), &[".changes[0].to"]),
        (
            "same from twice",
            json!({"changes": [{"from": "1", "to": "2"}, {"from": "1.0", "to": "3"}]}),
            &[".changes[1].from"],
        ),
        (
            "lower-case method",
            json!({"changes": [{"from": "1", "to": "2", "methods": ["post"]}]}),
            &[".changes[0].methods[0]"],
        ),
        ("no methods", json!({"changes": [{"from": "1", "to": "2", "methods": []}]}), &[".changes[0].methods"]),
        (
            "bad prefix",
            json!({"changes": [{"from": "1", "to": "2", "path_prefixes": ["register"]}]}),
            &[".changes[0].path_prefixes[0]"],
        ),
        (
            "bad pointer",
            json!({"changes": [step(json!([{"op": "remove", "path": "name"}]))]}),
            &[".changes[0].request[0].path"],
        ),
        (
            "bad escape",
            json!({"changes": [step(json!([{"op": "rename", "from": "/a~2", "to": "/b"}]))]}),
            &[".changes[0].request[0].from"],
        ),
        (
            "rename the body",
            json!({"changes": [step(json!([{"op": "rename", "from": "", "to": "/b"}]))]}),
            &[".changes[0].request[0].from"],
        ),
        (
            "rename to *",
            json!({"changes": [step(json!([{"op": "rename", "from": "/a/*/b", "to": "/a/*"}]))]}),
            &[".changes[0].request[0].to"],
        ),
        (
            "rename * mismatch",
            json!({"changes": [step(json!([{"op": "rename", "from": "/a/*/b", "to": "/a/b"}]))]}),
            &[".changes[0].request[0].to"],
        ),
        (
            "rename * between arrays",
            json!({"changes": [step(json!([{"op": "rename", "from": "/a/*/b", "to": "/c/*/b"}]))]}),
            &[".changes[0].request[0].to"],
        ),
        (
            "rename to itself",
            json!({"changes": [step(json!([{"op": "rename", "from": "/a", "to": "/a"}]))]}),
            &[".changes[0].request[0].to"],
        ),
        (
            "add the body",
            json!({"changes": [step(json!([{"op": "add", "path": "", "value": 1}]))]}),
            &[".changes[0].request[0].path"],
        ),
        (
            "remove *",
            json!({"changes": [{"from": "1", "to": "2", "response": [{"op": "remove", "path": "/items/*"}]}]}),
            &[".changes[0].response[0].path"],
        ),
        (
            "wrap into nothing",
            json!({"changes": [step(json!([{"op": "wrap", "path": "/a", "into": ""}]))]}),
            &[".changes[0].request[0].into"],
        ),
        (
            "unwrap from nothing",
            json!({"changes": [step(json!([{"op": "unwrap", "path": "/a", "from": ""}]))]}),
            &[".changes[0].request[0].from"],
        ),
        (
            "served version deployed",
            json!({"served_by_successor": ["2"], "changes": [{"from": "2", "to": "3"}]}),
            &[".served_by_successor[0]"],
        ),
        ("served minor deployed", json!({"served_by_successor": ["2.0"]}), &[".served_by_successor[0]"]),
        ("served bad version", json!({"served_by_successor": ["latest"]}), &[".served_by_successor[0]"]),
        (
            "served twice",
            json!({"served_by_successor": ["1", "1.0"], "changes": [{"from": "1", "to": "2"}]}),
            &[".served_by_successor[1]"],
        ),
        ("no change from it", json!({"served_by_successor": ["1"]}), &[".served_by_successor[0]"]),
        (
            "gap after a step",
            json!({"served_by_successor": ["0"], "changes": [{"from": "0", "to": "1"}]}),
            &[".served_by_successor[0]"],
        ),
        (
            "cycle",
            json!({"served_by_successor": ["0"], "changes": [{"from": "0", "to": "1"}, {"from": "1", "to": "0"}]}),
            &[".served_by_successor[0]"],
        ),
        ("contract version", json!({"contracts": [{"version": "2.x", "schema": {}}]}), &[".contracts[0].version"]),
        (
            "contract prefix",
            json!({"contracts": [{"version": "2", "path_prefix": "x", "schema": {}}]}),
            &[".contracts[0].path_prefix"],
        ),
        (
            "contract method",
            json!({"contracts": [{"version": "2", "methods": ["Get"], "schema": {}}]}),
            &[".contracts[0].methods[0]"],
        ),
        (
            "two contracts without methods",
            json!({"contracts": [{"version": "2", "schema": {}}, {"version": "2", "path_prefix": "/", "schema": {}}]}),
            &[".contracts[1]"],
        ),
        (
            "two contracts alike",
            json!({"contracts": [{"version": "2", "methods": ["POST", "PUT"], "schema": {}}, {"version": "2", "methods": ["PUT"], "schema": {}}]}),
            &[".contracts[1]"],
        ),
        ("schema not an object", json!({"contracts": [{"version": "2", "schema": true}]}), &[".contracts[0].schema"]),
        (
            "pattern",
            json!({"contracts": [{"version": "2", "schema": {"pattern": "x"}}]}),
            &[".contracts[0].schema.pattern"],
        ),
        (
            "$ref deep",
            json!({"contracts": [{"version": "2", "schema": {"properties": {"email": {"$ref": "#/x"}}}}]}),
            &[".contracts[0].schema.properties.email.$ref"],
        ),
        (
            "oneOf in items",
            json!({"contracts": [{"version": "2", "schema": {"items": {"oneOf": []}}}]}),
            &[".contracts[0].schema.items.oneOf"],
        ),
        (
            "odd property name",
            json!({"contracts": [{"version": "2", "schema": {"properties": {"e mail": {"type": "text"}}}}]}),
            &[".contracts[0].schema.properties[\"e mail\"].type"],
        ),
        (
            "bad type",
            json!({"contracts": [{"version": "2", "schema": {"properties": {"email": {"type": ["string", 1]}}}}]}),
            &[".contracts[0].schema.properties.email.type"],
        ),
        (
            "empty type list",
            json!({"contracts": [{"version": "2", "schema": {"type": []}}]}),
            &[".contracts[0].schema.type"],
        ),
        (
            "required not names",
            json!({"contracts": [{"version": "2", "schema": {"required": "email"}}]}),
            &[".contracts[0].schema.required"],
        ),
        (
            "additionalProperties schema",
            json!({"contracts": [{"version": "2", "schema": {"additionalProperties": {}}}]}),
            &[".contracts[0].schema.additionalProperties"],
        ),
        (
            "items tuple",
            json!({"contracts": [{"version": "2", "schema": {"items": [{}]}}]}),
            &[".contracts[0].schema.items"],
        ),
        (
            "empty enum",
            json!({"contracts": [{"version": "2", "schema": {"enum": []}}]}),
            &[".contracts[0].schema.enum"],
        ),
        (
            "negative length",
            json!({"contracts": [{"version": "2", "schema": {"minLength": -1}}]}),
            &[".contracts[0].schema.minLength"],
        ),
        (
            "draft 4 exclusive",
            json!({"contracts": [{"version": "2", "schema": {"exclusiveMinimum": true}}]}),
            &[".contracts[0].schema.exclusiveMinimum"],
        ),
        (
            "properties not an object",
            json!({"contracts": [{"version": "2", "schema": {"properties": []}}]}),
            &[".contracts[0].schema.properties"],
        ),
        (
            "every error at once",
            json!({"max_body_bytes": 0, "changes": [{"from": "x", "to": "2"}], "contracts": [{"version": "2", "schema": {"pattern": "x", "format": "email"}}]}),
            &[".max_body_bytes", ".changes[0].from", ".contracts[0].schema.format", ".contracts[0].schema.pattern"],
        ),
    ];
    for (name, value, want) in cases {
        let got: Vec<String> = match load(value, &["2.0.0", "3.0.0"]) {
            Ok(_) => vec![],
            Err(errors) => errors.into_iter().map(|e| e.path).collect(),
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn refuses_steps_that_read_what_an_earlier_step_took_away() {
    let chain = |first: Value, second: Value| {
        json!({"served_by_successor": ["1"], "changes": [
            {"from": "1", "to": "2", "request": first, "response": []},
            {"from": "2", "to": "3", "request": second}]})
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "renamed then renamed",
            chain(
                json!([{"op": "rename", "from": "/name", "to": "/full_name"}]),
                json!([{"op": "rename", "from": "/name", "to": "/n"}]),
            ),
            &[".changes[1].request[0].from"],
        ),
        (
            "removed then mapped",
            chain(
                json!([{"op": "remove", "path": "/user"}]),
                json!([{"op": "map", "path": "/user/status", "values": {}}]),
            ),
            &[".changes[1].request[0].path"],
        ),
        (
            "removed then wrapped each",
            chain(
                json!([{"op": "remove", "path": "/items/*/qty"}]),
                json!([{"op": "wrap", "path": "/items/0/qty", "into": "v"}]),
            ),
            &[".changes[1].request[0].path"],
        ),
        (
            "renamed then put back",
            chain(
                json!([{"op": "rename", "from": "/a", "to": "/b"}, {"op": "add", "path": "/a", "value": 1}]),
                json!([{"op": "rename", "from": "/a", "to": "/c"}]),
            ),
            &[],
        ),
        (
            "a sibling is fine",
            chain(json!([{"op": "remove", "path": "/a"}]), json!([{"op": "rename", "from": "/ab", "to": "/c"}])),
            &[],
        ),
        (
            "reading the new name is fine",
            chain(
                json!([{"op": "rename", "from": "/a", "to": "/b"}]),
                json!([{"op": "unwrap", "path": "/b", "from": "v"}]),
            ),
            &[],
        ),
        (
            "within one step is fine",
            chain(
                json!([{"op": "rename", "from": "/a", "to": "/b"}, {"op": "rename", "from": "/a", "to": "/c"}]),
                json!([]),
            ),
            &[],
        ),
        (
            "disjoint limits are fine",
            json!({"served_by_successor": ["1"], "changes": [
                {"from": "1", "to": "2", "methods": ["PUT"], "request": [{"op": "remove", "path": "/a"}]},
                {"from": "2", "to": "3", "methods": ["POST"], "request": [{"op": "rename", "from": "/a", "to": "/b"}]}]}),
            &[],
        ),
        (
            "responses run in reverse",
            json!({"served_by_successor": ["1"], "changes": [
                {"from": "1", "to": "2", "response": [{"op": "rename", "from": "/x", "to": "/y"}]},
                {"from": "2", "to": "3", "response": [{"op": "remove", "path": "/x"}]}]}),
            &[".changes[0].response[0].from"],
        ),
        (
            "not on a served chain",
            json!({"changes": [
                {"from": "1", "to": "2", "request": [{"op": "remove", "path": "/a"}]},
                {"from": "2", "to": "3", "request": [{"op": "rename", "from": "/a", "to": "/b"}]}]}),
            &[],
        ),
    ];
    for (name, value, want) in cases {
        let errors = load(value, &["3.0.0"]).err().unwrap_or_default();
        let got: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(got, want, "{name}: {errors:?}");
    }
    let errors = load(
        chain(
            json!([{"op": "rename", "from": "/name", "to": "/full_name"}]),
            json!([{"op": "rename", "from": "/name", "to": "/n"}]),
        ),
        &["3.0.0"],
    )
    .unwrap_err();
    assert_eq!(
        errors[0].message,
        "reads /name, a field another step removed: on the chain from 1, .changes[0].request[0] renamed away /name earlier"
    );
}

#[test]
fn explains_config_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"contracts": [{"version": "2", "schema": {"pattern": "x"}}]}),
            "\"pattern\" is not in the supported JSON Schema subset",
        ),
        (json!({"served_by_successor": ["2"]}), "version 2 has a deployment (2.0.0)"),
        (json!({"served_by_successor": ["1"]}), "version 1 is served by its successor, but no change leads on from 1"),
        (
            json!({"served_by_successor": ["0"], "changes": [{"from": "0", "to": "1"}]}),
            "no change leads on from 1 to a version with deployments",
        ),
        (
            json!({"served_by_successor": ["0"], "changes": [{"from": "0", "to": "1"}, {"from": "1", "to": "0"}]}),
            "cycle",
        ),
        (
            json!({"changes": [{"from": "1", "to": "2"}, {"from": "1", "to": "3"}]}),
            "another change (.changes[0]) already leads on from 1",
        ),
    ];
    for (value, want) in cases {
        let errors = load(value, &["2.0.0"]).unwrap_err();
        assert!(errors[0].message.contains(want), "{errors:?} lacks {want:?}");
    }
}

#[test]
fn unknown_fields_and_ops_are_refused_when_deserialising() {
    for value in [
        json!({"colour": 1}),
        json!({"changes": [{"from": "1", "to": "2", "extra": 1}]}),
        json!({"changes": [{"from": "1", "to": "2", "request": [{"op": "copy", "path": "/a"}]}]}),
        json!({"changes": [{"from": "1", "to": "2", "request": [{"op": "remove", "path": "/a", "value": 1}]}]}),
        json!({"contracts": [{"version": "2", "schema": {}, "strict": true}]}),
    ] {
        assert!(serde_json::from_value::<model::DataConfig>(value.clone()).is_err(), "{value}");
    }
}

#[test]
fn schemas_nest_only_so_deep() {
    let mut schema = json!({"type": "string"});
    for _ in 0..schema::MAX_DEPTH {
        schema = json!({"items": schema});
    }
    let errors = load(json!({"contracts": [{"version": "2", "schema": schema}]}), &[]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].path.ends_with(".items"), "{errors:?}");
    assert!(errors[0].message.contains("deeper than 32"));
}

fn findings(contracts: Value) -> Vec<(FindingKind, String, String, String)> {
    let data = ok(json!({"contracts": contracts}), &["2.0.0", "2.1.0"]);
    compatibility(&data).into_iter().map(|f| (f.kind, f.path, f.pointer, f.message)).collect()
}

#[test]
fn compatibility_finds_every_narrowing() {
    use FindingKind::*;
    let pair = |old: Value, new: Value| {
        json!([{"version": "2", "path_prefix": "/register", "schema": old},
               {"version": "2.1", "path_prefix": "/register", "schema": new}])
    };
    let at = ".contracts[1].schema";
    let cases: Vec<(&str, Value, &[Expected])> = vec![
        ("same", pair(json!({"required": ["a"]}), json!({"required": ["a"]})), &[]),
        ("looser", pair(json!({"required": ["a"], "maxLength": 3}), json!({"maxLength": 5})), &[]),
        (
            "newly required",
            pair(json!({"required": ["name"]}), json!({"required": ["name", "email"]})),
            &[(Required, ".required", "/email")],
        ),
        (
            "required nested",
            pair(json!({"properties": {"a": {}}}), json!({"properties": {"a": {"required": ["b"]}}})),
            &[(Required, ".properties.a.required", "/a/b")],
        ),
        (
            "closed",
            pair(json!({"properties": {"a": {}}}), json!({"properties": {"a": {}}, "additionalProperties": false})),
            &[(AdditionalClosed, ".additionalProperties", "")],
        ),
        (
            "property removed",
            pair(
                json!({"properties": {"a": {}, "b": {}}, "additionalProperties": false}),
                json!({"properties": {"a": {}}, "additionalProperties": false}),
            ),
            &[(PropertyRemoved, ".additionalProperties", "/b")],
        ),
        (
            "type narrowed",
            pair(
                json!({"properties": {"age": {"type": "number"}}}),
                json!({"properties": {"age": {"type": "integer"}}}),
            ),
            &[(TypeNarrowed, ".properties.age.type", "/age")],
        ),
        ("type widened", pair(json!({"type": "integer"}), json!({"type": ["number", "null"]})), &[]),
        ("type set", pair(json!({}), json!({"type": "object"})), &[(TypeNarrowed, ".type", "")]),
        (
            "enum narrowed",
            pair(json!({"properties": {"s": {"enum": ["a", "b"]}}}), json!({"properties": {"s": {"enum": ["a"]}}})),
            &[(EnumNarrowed, ".properties.s.enum", "/s")],
        ),
        ("enum widened", pair(json!({"enum": ["a"]}), json!({"enum": ["a", "b"]})), &[]),
        ("const set", pair(json!({}), json!({"const": 1})), &[(EnumNarrowed, ".const", "")]),
        ("min raised", pair(json!({"minimum": 0}), json!({"minimum": 1})), &[(BoundTightened, ".minimum", "")]),
        ("max lowered", pair(json!({"maximum": 9}), json!({"maximum": 8})), &[(BoundTightened, ".maximum", "")]),
        (
            "exclusive set",
            pair(json!({}), json!({"exclusiveMaximum": 8})),
            &[(BoundTightened, ".exclusiveMaximum", "")],
        ),
        (
            "length",
            pair(
                json!({"properties": {"n": {"minLength": 1}}}),
                json!({"properties": {"n": {"minLength": 2, "maxLength": 9}}}),
            ),
            &[(BoundTightened, ".properties.n.minLength", "/n"), (BoundTightened, ".properties.n.maxLength", "/n")],
        ),
        (
            "items",
            pair(json!({"items": {"maxItems": 3}}), json!({"minItems": 1, "items": {"maxItems": 2}})),
            &[(BoundTightened, ".minItems", ""), (BoundTightened, ".items.maxItems", "/*")],
        ),
        (
            "new property constrained",
            pair(json!({}), json!({"properties": {"age": {"type": "integer"}}})),
            &[(TypeNarrowed, ".properties.age.type", "/age")],
        ),
        (
            "new property was refused anyway",
            pair(
                json!({"additionalProperties": false}),
                json!({"additionalProperties": false, "properties": {"age": {"type": "integer"}}}),
            ),
            &[],
        ),
    ];
    for (name, contracts, want) in cases {
        let got: Vec<(FindingKind, String, String)> =
            findings(contracts).into_iter().map(|(k, p, q, _)| (k, p, q)).collect();
        let want: Vec<(FindingKind, String, String)> =
            want.iter().map(|(k, p, q)| (*k, format!("{at}{p}"), (*q).to_owned())).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn compatibility_compares_the_right_pairs_and_says_so() {
    let contracts = json!([
        {"version": "2.1", "path_prefix": "/register", "schema": {"required": ["email", "name"]}},
        {"version": "2", "path_prefix": "/register", "schema": {"required": ["name"]}},
        {"version": "2", "path_prefix": "/login", "schema": {}},
        {"version": "1", "path_prefix": "/register", "schema": {}},
        {"version": "2.1", "path_prefix": "/register", "methods": ["GET"], "schema": {"required": ["q"]}},
        {"version": "2", "path_prefix": "/register", "methods": ["PUT"], "schema": {}}
    ]);
    let data = ok(json!({"contracts": contracts}), &["1.0.0", "2.0.0", "2.1.0"]);
    let all = compatibility(&data);
    let summary: Vec<(String, String, String)> =
        all.iter().map(|f| (f.older.to_string(), f.newer.to_string(), f.pointer.clone())).collect();
    // 1 → 2 is a major step (not compared); /login has no older; 2.1 (all methods) is
    // compared with both 2s (a PUT got the one for PUT), GET 2.1 with the 2 for all methods.
    let pair = |pointer: &str| ("2".to_owned(), "2.1".to_owned(), pointer.to_owned());
    assert_eq!(summary, [pair("/email"), pair("/email"), pair("/name"), pair("/q")]);
    assert_eq!(
        all[2].message,
        "contract 2.1 (/register) requires /name, which 2 (PUT) did not require: bodies 2 accepted are refused"
    );
    assert_eq!(
        all[3].message,
        "contract 2.1 (GET /register) requires /q, which 2 did not require: bodies 2 accepted are refused"
    );
    let first = &all[0];
    assert_eq!(first.path, ".contracts[0].schema.required");
    assert_eq!(
        first.message,
        "contract 2.1 (/register) requires /email, which 2 did not require: bodies 2 accepted are refused"
    );
    assert!(first.affects(&Version::parse("2.1.0").unwrap()));
    assert!(first.affects(&Version::parse("2.1.4").unwrap()));
    assert!(!first.affects(&Version::parse("2.0.3").unwrap()));
    assert!(!first.affects(&Version::parse("2.2.0").unwrap()));
}

#[test]
fn compatibility_messages_read_as_sentences() {
    let contracts = json!([
        {"version": "2", "schema": {"properties": {"age": {"type": "number"}, "s": {"enum": ["a", "b"]}, "n": {"minLength": 1}}, "additionalProperties": true}},
        {"version": "2.0.1", "schema": {"properties": {"age": {"type": "integer"}, "s": {"enum": ["a"]}, "n": {"minLength": 2}}, "additionalProperties": false}}
    ]);
    let got: Vec<String> = findings(contracts).into_iter().map(|f| f.3).collect();
    assert_eq!(
        got,
        [
            "contract 2.0.1 (/) refuses members of the body that its properties do not list, which 2 accepted: bodies 2 accepted are refused",
            "contract 2.0.1 (/) narrows the type of /age from number to integer, which 2 accepted: bodies 2 accepted are refused",
            "contract 2.0.1 (/) raises minLength of /n from 1 to 2: bodies 2 accepted are refused",
            "contract 2.0.1 (/) no longer accepts \"b\" at /s, which 2 accepted: bodies 2 accepted are refused",
        ]
    );
}

#[test]
fn errors_read_well() {
    let error = DataError::new(".changes[0].from", "bad");
    assert_eq!(error.to_string(), ".changes[0].from: bad");
    let violations = vec![
        Violation { pointer: "/email".into(), message: "is required".into(), more: 0 },
        Violation { pointer: String::new(), message: "must be object, not array".into(), more: 0 },
    ];
    assert_eq!(
        BodyError::Contract(violations).to_string(),
        "the body breaks the contract: /email is required; the body must be object, not array"
    );
    assert_eq!(BodyError::Malformed("EOF at line 1".into()).to_string(), "the body is not JSON: EOF at line 1");
}

#[test]
fn too_many_changes() {
    let changes: Vec<Value> =
        (0..=chain::MAX_CHANGES).map(|i| json!({"from": format!("{}", i + 10), "to": format!("{}", i + 11)})).collect();
    let errors = load(json!({"changes": changes}), &[]).unwrap_err();
    assert_eq!(errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), [".changes"]);
}
