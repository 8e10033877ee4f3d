//! The filter's metrics: every family, label and label value is defined here, once.
//!
//! Each counter is a family and its labels, encoded in the name the filter gives the host:
//! `<family>;<label>=<value>;…`, e.g.
//! `meshver_requests_total;service=user;version=1;route=user-v1;outcome=forwarded;caller=order`.
//! Envoy keeps it as `wasmcustom.` + that name. The bootstrap's `stats_config.stats_tags`
//! ([`stats_tags`], written by `meshver render envoy`) turns each `;<label>=<value>` into a tag,
//! and Envoy 1.40's `/stats/prometheus` shows a wasm counter without the `wasmcustom.` prefix
//! and without `envoy_`, so Prometheus reads
//! `meshver_requests_total{service="user",version="1",route="user-v1",outcome="forwarded",caller="order"}`.
//!
//! Label values are bounded by the catalog: its services, its lines and the majors it serves by
//! a successor, its route keys, the problem kinds, the services it knows as callers, and the
//! fold-in values [`NONE`] and [`OTHER`]. A request cannot make a new series: a version that is
//! no line of the service counts as `version="other"`, an unknown caller as `caller="other"`.
//! A request is counted in VM memory ([`Tally`]); the host adapter hands the counts to Envoy
//! each tick, defining a counter the first time its labels have a count.

use crate::config::{Catalog, Deployment, Line, Service};
use crate::problem::ProblemKind;
use crate::version::RequestedVersion;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

/// The value of a label the request had nothing for: no version asked, no route (the
/// request was answered or matched no service), no caller known, no service matched.
pub const NONE: &str = "none";
/// The value every label value outside the catalog folds into (a version no line of the
/// service has, a caller the catalog does not know, a version or caller that cannot be read).
pub const OTHER: &str = "other";

/// A counter family: one Prometheus metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Every request the filter decides, once, by its outcome.
    Requests,
    /// Forwarded requests whose every deployment that may serve them is deprecated.
    DeprecatedRequests,
    /// Forwarded requests given a sticky bucket.
    StickyAssignments,
    /// Responses over the body filter's limit, passed on unchanged instead of walked back.
    ResponsesTooLarge,
}

impl Family {
    pub const ALL: [Family; 4] =
        [Family::Requests, Family::DeprecatedRequests, Family::StickyAssignments, Family::ResponsesTooLarge];

    /// The metric's name, as Prometheus shows it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Requests => "meshver_requests_total",
            Family::DeprecatedRequests => "meshver_deprecated_requests_total",
            Family::StickyAssignments => "meshver_sticky_assignments_total",
            Family::ResponsesTooLarge => "meshver_responses_too_large_total",
        }
    }

    /// Its labels, in the order the stat name holds them.
    pub fn labels(self) -> &'static [Label] {
        match self {
            Family::Requests => &[Label::Service, Label::Version, Label::Route, Label::Outcome, Label::Caller],
            Family::DeprecatedRequests => &[Label::Service, Label::Version, Label::Caller],
            Family::StickyAssignments => &[Label::Service, Label::Route],
            Family::ResponsesTooLarge => &[Label::Service, Label::Version, Label::Route, Label::Caller],
        }
    }

    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A label of some family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The service that matched.
    Service,
    /// The requested major version line (for deprecated use: the deprecated line in use).
    Version,
    /// The route key written: a line's or a pinned deployment's.
    Route,
    /// `forwarded`, the problem kind it was answered with, or `unmatched`.
    Outcome,
    /// The calling service, where the filter knows it (in a sidecar).
    Caller,
}

impl Label {
    pub const ALL: [Label; 5] = [Label::Service, Label::Version, Label::Route, Label::Outcome, Label::Caller];

    /// The label's name, in the stat name and in Prometheus.
    pub fn name(self) -> &'static str {
        match self {
            Label::Service => "service",
            Label::Version => "version",
            Label::Route => "route",
            Label::Outcome => "outcome",
            Label::Caller => "caller",
        }
    }
}

/// The `version` label: a major line of the service, or a fold-in value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionLabel {
    /// No version named (the default, or a caller's requirement, applied).
    None,
    /// A version the service has no line for, or none that could be read.
    Other,
    Line(u64),
}

/// The `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeLabel {
    Forwarded,
    /// Answered with this kind (never `response_too_large`: a response is counted in a family
    /// of its own, its request already counted).
    Rejected(ProblemKind),
    /// No service matched: the request passed through.
    Unmatched,
}

impl OutcomeLabel {
    pub fn value(self) -> Cow<'static, str> {
        match self {
            OutcomeLabel::Forwarded => "forwarded".into(),
            OutcomeLabel::Rejected(kind) => kind.label().into(),
            OutcomeLabel::Unmatched => "unmatched".into(),
        }
    }
}

/// The `caller` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerLabel {
    None,
    Other,
    /// A known caller: the catalog's services by index, then its own `caller` (the index one
    /// past the services) when that is no service of the catalog.
    Known(u32),
}

/// The route label of a request that has no route key.
pub const NO_ROUTE: u32 = u32::MAX;

/// What the filter knows of a request, as label values: all but its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    /// The service's index in the catalog; the number of services for none.
    pub service: u32,
    pub version: VersionLabel,
    /// The route key's index among the service's line routes, then its deployments' routes;
    /// [`NO_ROUTE`] for none.
    pub route: u32,
    pub caller: CallerLabel,
}

impl RequestLabels {
    /// A request no service matched: only the caller, a sidecar's own, can be known.
    pub fn unmatched(catalog: &Catalog) -> RequestLabels {
        let caller = catalog.caller.as_ref().map_or(CallerLabel::None, |c| caller_label(catalog, &c.identity.service));
        RequestLabels { service: index(catalog.services.len()), version: VersionLabel::None, route: NO_ROUTE, caller }
    }

    /// The labels as carried in the body mark (`<version>.<route>.<caller>`, `n` for none
    /// and `o` for other), so that the body filter counts a marked request as the header
    /// filter labelled it.
    pub fn mark(&self) -> String {
        let version = match self.version {
            VersionLabel::None => "n".to_owned(),
            VersionLabel::Other => "o".to_owned(),
            VersionLabel::Line(major) => major.to_string(),
        };
        let route = if self.route == NO_ROUTE { "n".to_owned() } else { self.route.to_string() };
        let caller = match self.caller {
            CallerLabel::None => "n".to_owned(),
            CallerLabel::Other => "o".to_owned(),
            CallerLabel::Known(at) => at.to_string(),
        };
        format!("{version}.{route}.{caller}")
    }

    /// Reads a body mark's labels back for the service at `service`. Whatever is missing or
    /// not of this catalog folds into `other` (or no route): the values stay bounded.
    pub fn from_mark(catalog: &Catalog, service: usize, mark: Option<&str>) -> RequestLabels {
        let mut parts = mark.unwrap_or_default().split('.');
        let (version, route, caller) = (parts.next(), parts.next(), parts.next());
        let version = match version {
            Some("n") => VersionLabel::None,
            Some(major) => match (catalog.services.get(service), major.parse::<u64>()) {
                (Some(s), Ok(major)) => version_label(s, Some(&RequestedVersion { major, minor: None, patch: None })),
                _ => VersionLabel::Other,
            },
            None => VersionLabel::Other,
        };
        let routes = catalog.services.get(service).map_or(0, |s| s.lines.len() + s.deployments.len());
        let route = route.and_then(|r| r.parse::<usize>().ok()).filter(|r| *r < routes).map_or(NO_ROUTE, index);
        let callers = catalog.services.len() + usize::from(catalog.caller.is_some());
        let caller = match caller {
            Some("n") => CallerLabel::None,
            Some(at) => at
                .parse::<usize>()
                .ok()
                .filter(|at| *at < callers)
                .map_or(CallerLabel::Other, |at| CallerLabel::Known(index(at))),
            None => CallerLabel::Other,
        };
        RequestLabels { service: index(service), version, route, caller }
    }
}

/// One counter: a family and its label values. Labels the family does not have hold fixed
/// values, so that equal label sets are one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    pub family: Family,
    pub labels: RequestLabels,
    pub outcome: OutcomeLabel,
}

impl Series {
    /// A decided request, under its outcome.
    pub fn request(labels: RequestLabels, outcome: OutcomeLabel) -> Series {
        Series { family: Family::Requests, labels, outcome }
    }

    /// A forwarded request that uses the deprecated line `major`.
    pub fn deprecated(labels: RequestLabels, major: u64) -> Series {
        let labels = RequestLabels { version: VersionLabel::Line(major), route: NO_ROUTE, ..labels };
        Series { family: Family::DeprecatedRequests, labels, outcome: OutcomeLabel::Forwarded }
    }

    /// A forwarded request given a sticky bucket.
    pub fn sticky(labels: RequestLabels) -> Series {
        let labels = RequestLabels { version: VersionLabel::None, caller: CallerLabel::None, ..labels };
        Series { family: Family::StickyAssignments, labels, outcome: OutcomeLabel::Forwarded }
    }

    /// A response passed on unchanged because it was over the body filter's limit.
    pub fn response_too_large(labels: RequestLabels) -> Series {
        Series { family: Family::ResponsesTooLarge, labels, outcome: OutcomeLabel::Forwarded }
    }

    /// The value of one label.
    pub fn value<'c>(&self, catalog: &'c Catalog, label: Label) -> Cow<'c, str> {
        let service = catalog.services.get(self.labels.service as usize);
        match label {
            Label::Service => service.map_or(NONE.into(), |s| s.name.as_str().into()),
            Label::Version => match self.labels.version {
                VersionLabel::None => NONE.into(),
                VersionLabel::Other => OTHER.into(),
                VersionLabel::Line(major) => major.to_string().into(),
            },
            Label::Route => service.and_then(|s| route_key(s, self.labels.route)).map_or(NONE.into(), Cow::Borrowed),
            Label::Outcome => self.outcome.value(),
            Label::Caller => match self.labels.caller {
                CallerLabel::None => NONE.into(),
                CallerLabel::Other => OTHER.into(),
                CallerLabel::Known(at) => known_caller(catalog, at).map_or(OTHER.into(), Cow::Borrowed),
            },
        }
    }

    /// The name the counter is defined with: `<family>;<label>=<value>;…`.
    pub fn stat_name(&self, catalog: &Catalog) -> String {
        let mut name = self.family.name().to_owned();
        for label in self.family.labels() {
            name.push(';');
            name.push_str(label.name());
            name.push('=');
            name.push_str(&self.value(catalog, *label));
        }
        name
    }
}

/// A stat name the filter defined (with or without Envoy's `wasmcustom.` prefix), read back
/// into its family and `(label, value)` pairs; `None` for any other stat.
pub fn parse_stat_name(name: &str) -> Option<(Family, Vec<(&str, &str)>)> {
    let mut parts = name.strip_prefix(WASM_STAT_PREFIX).unwrap_or(name).split(';');
    let family = Family::from_name(parts.next()?)?;
    let labels: Option<Vec<(&str, &str)>> = parts.map(|pair| pair.split_once('=')).collect();
    Some((family, labels?))
}

/// The prefix Envoy puts before the name of every counter a wasm module defines.
pub const WASM_STAT_PREFIX: &str = "wasmcustom.";

/// Envoy's tag specifiers (`stats_config.stats_tags`: tag name, regex) that turn the labels
/// encoded in the stat names into tags, which `/stats/prometheus` shows as labels. A regex's
/// first capture group is what Envoy removes from the name, its second the tag's value; what is
/// left of the name is the metric's name. The anchor on `wasmcustom.meshver_` keeps them off
/// every other stat (and lets Envoy try them only on stats of that first segment).
pub fn stats_tags() -> Vec<(&'static str, String)> {
    Label::ALL
        .iter()
        .map(|label| (label.name(), format!(r"^wasmcustom\.meshver_.*?(;{}=([^;]*))", label.name())))
        .collect()
}

/// The `version` label of a request that named `requested` (or nothing): its major when that
/// is a line of the service or a major it serves by a successor, otherwise `other`.
pub fn version_label(service: &Service, requested: Option<&RequestedVersion>) -> VersionLabel {
    let Some(requested) = requested else {
        return VersionLabel::None;
    };
    let major = requested.major;
    let served = || service.data.as_ref().is_some_and(|d| d.served_versions().any(|v| v.major == major));
    if service.line(major).is_some() || served() {
        VersionLabel::Line(major)
    } else {
        VersionLabel::Other
    }
}

/// The `route` label of the route key written: the line's when the whole line serves, or the
/// pinned deployment's. Found by address (both are the catalog's own), not by comparing keys.
pub fn route_label(service: &Service, whole_line: Option<&Line>, pinned: &Deployment) -> u32 {
    let at = match whole_line {
        Some(line) => service.lines.iter().position(|l| std::ptr::eq(l, line)),
        None => service.deployments.iter().position(|d| std::ptr::eq(d, pinned)).map(|d| service.lines.len() + d),
    };
    at.map_or(NO_ROUTE, index)
}

/// The `caller` label of a calling service's name.
pub fn caller_label(catalog: &Catalog, name: &str) -> CallerLabel {
    if let Some(at) = catalog.services.iter().position(|s| s.name == name) {
        return CallerLabel::Known(index(at));
    }
    match &catalog.caller {
        Some(own) if own.identity.service == name => CallerLabel::Known(index(catalog.services.len())),
        _ => CallerLabel::Other,
    }
}

/// The route key behind a `route` label.
fn route_key(service: &Service, route: u32) -> Option<&str> {
    let route = route as usize;
    match route.checked_sub(service.lines.len()) {
        None => service.lines.get(route).map(|l| l.route.as_str()),
        Some(deployment) => service.deployments.get(deployment).map(|d| d.route.as_str()),
    }
}

/// The name behind a known caller.
fn known_caller(catalog: &Catalog, at: u32) -> Option<&str> {
    let at = at as usize;
    match catalog.services.get(at) {
        Some(service) => Some(&service.name),
        None if at == catalog.services.len() => catalog.caller.as_ref().map(|c| c.identity.service.as_str()),
        None => None,
    }
}

/// Indexes are bounded by the catalog (far below `u32::MAX`); saturating keeps this total.
fn index(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX - 1)
}

/// Counts not yet handed to the host, by series. Counting is a hash of a few integers and an
/// increment: no host call, no allocation once a series has been seen.
#[derive(Debug, Default)]
pub struct Tally {
    // foldhash: a fast hash for a few small integers; the standard SipHash resists hash
    // flooding, which bounded keys cannot cause.
    pending: RefCell<HashMap<Series, u64, foldhash::fast::FixedState>>,
}

impl Tally {
    pub fn count(&self, series: Series) {
        // Never borrowed across a count: the fallback only keeps a bug from panicking.
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            let count = pending.entry(series).or_insert(0);
            *count = count.saturating_add(1);
        }
    }

    /// The counts since the last call, emptied (the map keeps its room for the next ones).
    pub fn take(&self) -> Vec<(Series, u64)> {
        self.pending.try_borrow_mut().map(|mut pending| pending.drain().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::filter::fake::FakeHost;
    use crate::filter::on_request_headers;
    use crate::lifecycle::parse_instant;
    use std::collections::BTreeSet;

    fn catalog(overlay: &str) -> Catalog {
        let mut json: serde_json::Value = serde_json::from_slice(include_bytes!("../examples/catalog.json")).unwrap();
        for (name, value) in serde_json::from_str::<serde_json::Value>(overlay).unwrap().as_object().unwrap() {
            json[name] = value.clone();
        }
        config::load(json.to_string().as_bytes()).unwrap()
    }

    /// The stat names one request counts in, through the whole request path, on `date`.
    fn counted_on(catalog: &Catalog, date: &str, path: &str, headers: &[(&str, &[u8])]) -> Vec<String> {
        let mut all: Vec<(&str, &[u8])> = vec![(":path", path.as_bytes()), (":method", b"POST")];
        all.extend_from_slice(headers);
        let mut host = FakeHost { now: parse_instant(date).unwrap(), ..FakeHost::new(&all) };
        on_request_headers(&mut host, catalog);
        host.counted.iter().map(|s| s.stat_name(catalog)).collect()
    }

    fn counted(catalog: &Catalog, path: &str, headers: &[(&str, &[u8])]) -> Vec<String> {
        counted_on(catalog, "2026-11-26", path, headers)
    }

    #[test]
    fn requests_are_labelled_by_service_version_route_outcome_and_caller() {
        let edge = catalog("{}");
        type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "/register",
                &[],
                &[
                    "meshver_requests_total;service=user;version=none;route=user-v1;outcome=forwarded;caller=none",
                    // The 1.x line is deprecated since 2026-01-01.
                    "meshver_deprecated_requests_total;service=user;version=1;caller=none",
                ],
            ),
            (
                "/register",
                &[("x-api-version", b"2"), ("x-user-id", b"alice")],
                &[
                    "meshver_requests_total;service=user;version=2;route=user-v2;outcome=forwarded;caller=none",
                    "meshver_sticky_assignments_total;service=user;route=user-v2",
                ],
            ),
            (
                "/v2.1/login",
                &[],
                &["meshver_requests_total;service=user;version=2;route=user-2.1.0;outcome=forwarded;caller=none"],
            ),
            (
                "/register",
                &[("x-api-version", b"9")],
                &["meshver_requests_total;service=user;version=other;route=none;outcome=unsupported_version;caller=none"],
            ),
            (
                "/register",
                &[("x-api-version", b"2.1.3")],
                &["meshver_requests_total;service=user;version=2;route=none;outcome=unsupported_version;caller=none"],
            ),
            (
                "/order",
                &[("x-api-version", b"x")],
                &["meshver_requests_total;service=order;version=other;route=none;outcome=malformed_version;caller=none"],
            ),
            (
                "/v1/order",
                &[("x-api-version", b"2")],
                &["meshver_requests_total;service=order;version=other;route=none;outcome=version_conflict;caller=none"],
            ),
            (
                "/elsewhere",
                &[],
                &["meshver_requests_total;service=none;version=none;route=none;outcome=unmatched;caller=none"],
            ),
        ];
        for (path, headers, want) in cases {
            assert_eq!(counted(&edge, path, headers), *want, "{path} {headers:?}");
        }
    }

    #[test]
    fn deprecated_use_counts_from_the_deprecation_instant() {
        let edge = catalog("{}");
        let before = counted_on(&edge, "2025-12-31", "/register", &[]);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(counted_on(&edge, "2026-01-01", "/register", &[]).len(), 2);
    }

    #[test]
    fn sidecars_label_the_caller() {
        let sidecar = catalog(r#"{"caller": {"service": "order", "version": "2.0.0"}}"#);
        assert_eq!(
            counted(&sidecar, "/login", &[]),
            ["meshver_requests_total;service=user;version=none;route=user-2.1.0;outcome=forwarded;caller=order"]
        );
        assert_eq!(
            counted(&sidecar, "/login", &[("x-api-version", b"1")]),
            ["meshver_requests_total;service=user;version=1;route=none;outcome=no_compatible_deployment;caller=order"]
        );
        assert_eq!(
            counted(&sidecar, "/nowhere", &[]),
            ["meshver_requests_total;service=none;version=none;route=none;outcome=unmatched;caller=order"]
        );
        // A sidecar of a service the catalog does not list is a known caller too: its own.
        let stranger = catalog(r#"{"caller": {"service": "billing", "version": "1.0.0"}}"#);
        assert!(counted(&stranger, "/login", &[])[0].ends_with(";caller=billing"));

        let inbound = catalog(r#"{"trust_caller_headers": true}"#);
        let from =
            |caller: &[u8]| counted(&inbound, "/login", &[("x-api-version", b"2"), ("x-meshver-caller", caller)]);
        assert!(from(b"order/2.0.0")[0].ends_with(";outcome=forwarded;caller=order"));
        // An identity the catalog does not know folds into one value; an unreadable one too.
        assert!(from(b"ghost-7/1.0.0")[0].ends_with(";outcome=forwarded;caller=other"));
        assert!(from(b"not an identity")[0].ends_with(";outcome=malformed_caller;caller=other"));
    }

    #[test]
    fn random_versions_fold_into_one_value() {
        let edge = catalog("{}");
        let mut names = BTreeSet::new();
        let mut seed: u64 = 7;
        for i in 0..200 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let version = match i % 4 {
                0 => format!("{}", 3 + seed % 1_000_000),
                1 => format!("{}.{}", 3 + seed % 97, seed % 13),
                2 => format!("v{}.{}.{}", 10 + seed % 1000, seed % 7, seed % 5),
                _ => format!("x{seed:x}"),
            };
            names.extend(counted(&edge, "/register", &[("x-api-version", version.as_bytes())]));
            names.extend(counted(&edge, &format!("/v{version}/login"), &[]));
        }
        // 400 requests, three series: a junk path segment is no version, so no service matches.
        let want = BTreeSet::from([
            "meshver_requests_total;service=user;version=other;route=none;outcome=malformed_version;caller=none",
            "meshver_requests_total;service=user;version=other;route=none;outcome=unsupported_version;caller=none",
            "meshver_requests_total;service=none;version=none;route=none;outcome=unmatched;caller=none",
        ]);
        assert_eq!(names.iter().map(String::as_str).collect::<BTreeSet<_>>(), want);
    }

    #[test]
    fn the_body_mark_carries_the_labels() {
        let sidecar = catalog(r#"{"caller": {"service": "order", "version": "2.0.0"}}"#);
        let labels =
            RequestLabels { service: 0, version: VersionLabel::Line(2), route: 4, caller: CallerLabel::Known(1) };
        assert_eq!(labels.mark(), "2.4.1");
        assert_eq!(RequestLabels::from_mark(&sidecar, 0, Some("2.4.1")), labels);
        let none = RequestLabels { version: VersionLabel::None, route: NO_ROUTE, caller: CallerLabel::None, ..labels };
        assert_eq!(RequestLabels::from_mark(&sidecar, 0, Some(&none.mark())), none);
        // Whatever is not of this catalog folds: a major with no line, a route or caller out of range.
        let folded =
            RequestLabels { version: VersionLabel::Other, route: NO_ROUTE, caller: CallerLabel::Other, ..labels };
        assert_eq!(RequestLabels::from_mark(&sidecar, 0, Some("7.99.99")), folded);
        assert_eq!(RequestLabels::from_mark(&sidecar, 0, Some("x")), folded);
        assert_eq!(RequestLabels::from_mark(&sidecar, 0, None), folded);
    }

    #[test]
    fn stat_names_read_back() {
        let name = "wasmcustom.meshver_sticky_assignments_total;service=user;route=user-2.1.0";
        let (family, labels) = parse_stat_name(name).unwrap();
        assert_eq!(family, Family::StickyAssignments);
        assert_eq!(labels, [("service", "user"), ("route", "user-2.1.0")]);
        assert_eq!(parse_stat_name("cluster.user-v1.upstream_rq_completed"), None);
        assert_eq!(parse_stat_name("meshver_requests_total;service"), None);
        let tags = stats_tags();
        assert_eq!(tags.len(), Label::ALL.len());
        assert_eq!(tags[2], ("route", r"^wasmcustom\.meshver_.*?(;route=([^;]*))".to_owned()));
    }

    #[test]
    fn outcome_labels_are_the_problem_types_in_snake_case() {
        for kind in ProblemKind::ALL {
            assert_eq!(OutcomeLabel::Rejected(kind).value(), kind.slug().replace('-', "_"));
        }
    }

    #[test]
    fn a_tally_sums_per_series_and_empties() {
        let edge = catalog("{}");
        let tally = Tally::default();
        let forwarded = Series::request(RequestLabels::unmatched(&edge), OutcomeLabel::Forwarded);
        let unmatched = Series::request(RequestLabels::unmatched(&edge), OutcomeLabel::Unmatched);
        for _ in 0..3 {
            tally.count(forwarded);
        }
        tally.count(unmatched);
        let mut taken = tally.take();
        taken.sort_by_key(|(_, count)| *count);
        assert_eq!(taken, [(unmatched, 1), (forwarded, 3)]);
        assert!(tally.take().is_empty());
    }
}
