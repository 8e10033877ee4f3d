//! Compatibility of contracts inside one major line: every way a newer minor or patch
//! version's contract refuses a body that the previous version's contract accepted.

use super::contract::Contract;
use super::pointer::push_escaped;
use super::schema::{json_eq, list, Schema};
use super::{covers, specificity, ServiceData};
use crate::version::RequestedVersion;
use semver::Version;
use serde_json::Value;
use std::fmt;

/// The kind of narrowing a finding reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// A field is newly required.
    Required,
    /// A property is gone while `additionalProperties` is false.
    PropertyRemoved,
    /// `additionalProperties` turned false.
    AdditionalClosed,
    /// Fewer types are allowed.
    TypeNarrowed,
    /// Fewer values are allowed (`enum`, `const`).
    EnumNarrowed,
    /// A tighter `minimum`, `maximum`, `minLength`, `maxLength`, `minItems` or `maxItems`.
    BoundTightened,
}

/// A newer contract refusing bodies an older one of the same line accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// Config path, relative to the `data` object (`.contracts[1].schema.required`).
    pub path: String,
    /// The field in the body (`/email`; `""` is the body).
    pub pointer: String,
    /// The older contract's version (`2`).
    pub older: RequestedVersion,
    /// The newer contract's version (`2.1`): deployments it covers are affected.
    pub newer: RequestedVersion,
    /// The sentence for the operator.
    pub message: String,
}

impl Finding {
    /// Whether a deployment is affected: the newer contract covers its version
    /// (contract `2.1` covers deployment `2.1.0`).
    pub fn affects(&self, deployment: &Version) -> bool {
        let full =
            RequestedVersion { major: deployment.major, minor: Some(deployment.minor), patch: Some(deployment.patch) };
        covers(&self.newer, &full)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every narrowing between consecutive contracts of a line (same major, path prefix and a
/// method in common), oldest pair first.
pub fn compatibility(data: &ServiceData) -> Vec<Finding> {
    let order = |c: &Contract| {
        let v = c.version;
        (v.major, v.minor.unwrap_or(0), v.patch.unwrap_or(0), specificity(&v))
    };
    let mut sorted: Vec<&Contract> = data.contracts.iter().collect();
    sorted.sort_by_key(|c| (order(c), c.at.clone()));
    let mut findings = Vec::new();
    for (n, newer) in sorted.iter().enumerate() {
        // The older contracts a request of the previous version got, for the same requests:
        // all those of the newest older version (one per method set) that share a method.
        let candidates = || {
            sorted.iter().take(n).filter(|o| {
                o.version.major == newer.version.major
                    && order(o) < order(newer)
                    && o.path_prefix == newer.path_prefix
                    && o.limits.overlap(&newer.limits)
            })
        };
        let Some(previous) = candidates().map(|o| order(o)).max() else { continue };
        for older in candidates().filter(|o| order(o) == previous) {
            let mut diff = Diff { older, newer, findings: &mut findings };
            diff.schemas(&older.schema, &newer.schema, &mut String::new());
        }
    }
    findings
}

/// A contract's methods, `POST|PUT`, when it names them.
fn methods(contract: &Contract) -> Option<String> {
    contract.limits.methods.as_ref().map(|m| m.join("|"))
}

struct Diff<'a> {
    older: &'a Contract,
    newer: &'a Contract,
    findings: &'a mut Vec<Finding>,
}

impl Diff<'_> {
    /// The older contract in a sentence: `2`, or `2 (PUT)` when it names its methods.
    fn older_label(&self) -> String {
        match methods(self.older) {
            Some(m) => format!("{} ({m})", self.older.version),
            None => self.older.version.to_string(),
        }
    }

    fn report(&mut self, kind: FindingKind, path: String, pointer: &str, what: String) {
        let field = if pointer.is_empty() { "the body" } else { pointer };
        let what = what.replace("{field}", field);
        let (older, newer) = (self.older.version, self.newer.version);
        let message = format!(
            "contract {newer} ({}{}) {what}: bodies {older} accepted are refused",
            methods(self.newer).map(|m| format!("{m} ")).unwrap_or_default(),
            self.newer.path_prefix
        );
        self.findings.push(Finding { kind, path, pointer: pointer.to_owned(), older, newer, message });
    }

    /// Compares two schemas for the same field; both are bounded by the schema depth limit.
    fn schemas(&mut self, old: &Schema, new: &Schema, pointer: &mut String) {
        let older = self.older_label();
        let at = &new.at;
        if let Some(types) = new.types {
            match old.types {
                None => self.report(
                    FindingKind::TypeNarrowed,
                    format!("{at}.type"),
                    pointer,
                    format!("accepts only {types} at {{field}}, where {older} accepted any type"),
                ),
                Some(before) if !types.covers(before) => self.report(
                    FindingKind::TypeNarrowed,
                    format!("{at}.type"),
                    pointer,
                    format!("narrows the type of {{field}} from {before} to {types}, which {older} accepted"),
                ),
                Some(_) => {}
            }
        }
        self.values(old, new, pointer);
        self.bounds(old, new, pointer);
        self.objects(old, new, pointer);
        if let Some(items) = &new.items {
            let any = Schema::default();
            let before = old.items.as_deref().unwrap_or(&any);
            let len = pointer.len();
            pointer.push_str("/*");
            self.schemas(before, items, pointer);
            pointer.truncate(len);
        }
    }

    fn values(&mut self, old: &Schema, new: &Schema, pointer: &str) {
        let allowed = |s: &Schema| -> Option<Vec<Value>> {
            match (&s.enumeration, &s.constant) {
                (Some(values), Some(c)) => Some(values.iter().filter(|v| json_eq(v, c, 0)).cloned().collect()),
                (Some(values), None) => Some(values.clone()),
                (None, Some(c)) => Some(vec![c.clone()]),
                (None, None) => None,
            }
        };
        let Some(now) = allowed(new) else { return };
        let keyword = if new.enumeration.is_some() { "enum" } else { "const" };
        let path = format!("{}.{keyword}", new.at);
        let older = self.older_label();
        match allowed(old) {
            None => self.report(
                FindingKind::EnumNarrowed,
                path,
                pointer,
                format!("limits {{field}} to {}, where {older} accepted any value", list(&now)),
            ),
            Some(before) => {
                let lost: Vec<Value> = before.into_iter().filter(|b| !now.iter().any(|n| json_eq(b, n, 0))).collect();
                if !lost.is_empty() {
                    self.report(
                        FindingKind::EnumNarrowed,
                        path,
                        pointer,
                        format!("no longer accepts {} at {{field}}, which {older} accepted", list(&lost)),
                    );
                }
            }
        }
    }

    fn bounds(&mut self, old: &Schema, new: &Schema, pointer: &str) {
        let older = self.older_label();
        let lower = [
            ("minLength", old.min_length.map(|n| n as f64), new.min_length.map(|n| n as f64)),
            ("minItems", old.min_items.map(|n| n as f64), new.min_items.map(|n| n as f64)),
            ("minimum", old.minimum, new.minimum),
            ("exclusiveMinimum", old.exclusive_minimum, new.exclusive_minimum),
        ];
        let upper = [
            ("maxLength", old.max_length.map(|n| n as f64), new.max_length.map(|n| n as f64)),
            ("maxItems", old.max_items.map(|n| n as f64), new.max_items.map(|n| n as f64)),
            ("maximum", old.maximum, new.maximum),
            ("exclusiveMaximum", old.exclusive_maximum, new.exclusive_maximum),
        ];
        let checks = lower.into_iter().map(|c| (c, true)).chain(upper.into_iter().map(|c| (c, false)));
        for ((keyword, before, now), is_lower) in checks {
            let Some(now) = now else { continue };
            let what = match before {
                None => format!("sets {keyword} {now} on {{field}}, which {older} did not limit"),
                Some(b) if (is_lower && now > b) || (!is_lower && now < b) => {
                    let verb = if is_lower { "raises" } else { "lowers" };
                    format!("{verb} {keyword} of {{field}} from {b} to {now}")
                }
                Some(_) => continue,
            };
            self.report(FindingKind::BoundTightened, format!("{}.{keyword}", new.at), pointer, what);
        }
    }

    fn objects(&mut self, old: &Schema, new: &Schema, pointer: &mut String) {
        let older = self.older_label();
        let len = pointer.len();
        for name in new.required.iter().filter(|n| !old.required.contains(n)) {
            push_escaped(pointer, name);
            self.report(
                FindingKind::Required,
                format!("{}.required", new.at),
                pointer,
                format!("requires {{field}}, which {older} did not require"),
            );
            pointer.truncate(len);
        }
        let closed = new.additional_properties == Some(false);
        if closed && old.additional_properties != Some(false) {
            self.report(
                FindingKind::AdditionalClosed,
                format!("{}.additionalProperties", new.at),
                pointer,
                format!("refuses members of {{field}} that its properties do not list, which {older} accepted"),
            );
        }
        if closed {
            for (name, _) in old.properties.iter().filter(|(n, _)| !new.properties.iter().any(|(m, _)| m == n)) {
                push_escaped(pointer, name);
                self.report(
                    FindingKind::PropertyRemoved,
                    format!("{}.additionalProperties", new.at),
                    pointer,
                    format!("no longer accepts {{field}} (additionalProperties is false), which {older} accepted"),
                );
                pointer.truncate(len);
            }
        }
        let any = Schema::default();
        for (name, now) in &new.properties {
            let before = match old.properties.iter().find(|(n, _)| n == name) {
                Some((_, before)) => before,
                // The older contract refused this member anyway: nothing it accepted is lost.
                None if old.additional_properties == Some(false) => continue,
                None => &any,
            };
            push_escaped(pointer, name);
            self.schemas(before, now, pointer);
            pointer.truncate(len);
        }
    }
}
