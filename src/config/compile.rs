//! Validation: turns the configuration as written into a [`Catalog`], collecting every
//! mistake with its JSON path instead of stopping at the first.
//!
//! One direction: services first (each deployment compiled once, together with its line),
//! then the caller, which refers to them.

use super::catalog::{Caller, Catalog, DefaultVersion, Deployment, HostPattern, Line, Service};
use super::model::{
    CallerConfig, DeploymentConfig, LifecycleConfig, LineConfig, PluginConfig, ServiceConfig, StickyConfig,
};
use super::{ConfigError, ConfigErrors};
use super::{DEFAULT_QUERY_PARAM, DEFAULT_ROUTE_HEADER, DEFAULT_VERSION_HEADER, OWNED_HEADER_PREFIX};
use crate::caller::{check_spiffe_id, CallerIdentity, PeerBinding};
use crate::data;
use crate::lifecycle::{parse_instant, Lifecycle};
use crate::sources::Source;
use crate::sticky::StickyKey;
use crate::version::RequestedVersion;
use semver::{Version, VersionReq};
use std::collections::{BTreeMap, BTreeSet};

/// Collects errors while a configuration is walked.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }
}

pub(super) fn compile(config: PluginConfig) -> Result<Catalog, ConfigErrors> {
    let mut errors = Errors::default();
    let route_header = config.route_header.unwrap_or_else(|| DEFAULT_ROUTE_HEADER.to_owned());
    if !is_header_name(&route_header)
        || !route_header.starts_with(OWNED_HEADER_PREFIX)
        || route_header.len() == OWNED_HEADER_PREFIX.len()
    {
        errors.add("$.route_header", format!("{route_header:?} must be a lower-case header name starting with {OWNED_HEADER_PREFIX:?}, so that clients cannot set it"));
    }
    if config.services.is_empty() {
        errors.add("$.services", "at least one service is needed");
    }
    let known: BTreeSet<String> = config.services.iter().map(|s| s.name.clone()).collect();
    let mut names = BTreeSet::new();
    let mut route_keys = BTreeSet::new();
    let mut services = Vec::with_capacity(config.services.len());
    for (i, service) in config.services.into_iter().enumerate() {
        let path = format!("$.services[{i}]");
        if !names.insert(service.name.clone()) {
            errors.add(format!("{path}.name"), format!("service {:?} is listed twice", service.name));
        }
        services.push(compile_service(&path, service, &known, &mut route_keys, &mut errors));
    }
    let caller = config.caller.and_then(|c| compile_caller(c, &services, &known, &mut errors));
    let caller_spiffe_ids =
        config.caller_spiffe_ids.map(|ids| compile_binding(ids, config.trust_caller_headers, &mut errors));
    if errors.0.is_empty() {
        let trust_caller_headers = config.trust_caller_headers;
        Ok(Catalog { route_header, services, caller, trust_caller_headers, caller_spiffe_ids })
    } else {
        Err(ConfigErrors(errors.0))
    }
}

/// The outbound sidecar's caller: who it is, and what it requires of each service (given
/// here, or else those of its own deployment in the catalog).
fn compile_caller(
    config: CallerConfig,
    services: &[Service],
    known: &BTreeSet<String>,
    errors: &mut Errors,
) -> Option<Caller> {
    let version = Version::parse(&config.version).ok();
    if version.is_none() {
        errors.add("$.caller.version", format!("{:?} is not a full semver version (like 2.0.0)", config.version));
    }
    if !is_service_name(&config.service) {
        errors.add("$.caller.service", format!("{:?} is not a service name", config.service));
    }
    let requires = match config.requires {
        Some(given) => compile_requires("$.caller.requires", &given, known, errors),
        None => services
            .iter()
            .filter(|s| s.name == config.service)
            .flat_map(|s| &s.deployments)
            .find(|d| Some(&d.version) == version.as_ref())
            .map(|d| d.requires.clone())
            .unwrap_or_default(),
    };
    let identity = CallerIdentity { service: config.service, version: version? };
    Some(Caller { identity, requires })
}

/// The SPIFFE IDs that may claim each caller service. Callers need not be services of this
/// catalog (any service may call), but each must be a service name, and each ID a SPIFFE ID.
fn compile_binding(ids: BTreeMap<String, Vec<String>>, trusted: bool, errors: &mut Errors) -> PeerBinding {
    const PATH: &str = "$.caller_spiffe_ids";
    if !trusted {
        errors.add(PATH, "binds the caller claims that trust_caller_headers reads: set trust_caller_headers to true");
    }
    for (service, list) in &ids {
        let at = format!("{PATH}.{service}");
        if !is_service_name(service) {
            errors.add(&at, format!("{service:?} is not a service name"));
        }
        if list.is_empty() {
            errors.add(&at, "list at least one SPIFFE ID, or leave the service out so that no peer may claim it");
        }
        let mut seen = BTreeSet::new();
        for (i, id) in list.iter().enumerate() {
            if let Err(wrong) = check_spiffe_id(id) {
                errors.add(
                    format!("{at}[{i}]"),
                    format!("{id:?} is not a SPIFFE ID (like spiffe://cluster.local/ns/shop/sa/{service}): it {wrong}"),
                );
            } else if !seen.insert(id) {
                errors.add(format!("{at}[{i}]"), format!("{id:?} is listed twice"));
            }
        }
    }
    PeerBinding::new(ids.into_iter().collect())
}

/// Semver ranges by callee service, each checked to parse and to name a service of the catalog.
fn compile_requires(
    path: &str,
    ranges: &BTreeMap<String, String>,
    known: &BTreeSet<String>,
    errors: &mut Errors,
) -> Vec<(String, VersionReq)> {
    let mut requires = Vec::with_capacity(ranges.len());
    for (callee, range) in ranges {
        let at = format!("{path}.{callee}");
        match VersionReq::parse(range) {
            Ok(req) => requires.push((callee.clone(), req)),
            Err(e) => errors.add(&at, format!("{range:?} is not a semver range (like \">=2.1, <3\"): {e}")),
        }
        if !known.contains(callee) {
            errors.add(at, format!("{callee:?} is not a service of this catalog"));
        }
    }
    requires
}

fn compile_service(
    path: &str,
    config: ServiceConfig,
    known: &BTreeSet<String>,
    route_keys: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> Service {
    let name = config.name;
    if !is_service_name(&name) {
        errors.add(
            format!("{path}.name"),
            format!("{name:?} must be lower-case letters, digits and '-', starting and ending with a letter or digit"),
        );
    }

    let matcher = config.matcher;
    if matcher.path_prefixes.is_empty() && matcher.hosts.is_empty() {
        errors.add(format!("{path}.match"), "give path_prefixes, hosts or both (use [\"/\"] to match every path)");
    }
    for (i, prefix) in matcher.path_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') || prefix.bytes().any(|b| b == b'?' || b == b'#' || !b.is_ascii_graphic()) {
            errors.add(
                format!("{path}.match.path_prefixes[{i}]"),
                format!("{prefix:?} must start with '/' and hold no spaces, '?' or '#'"),
            );
        }
    }
    let hosts = matcher
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, host)| {
            let pattern = host_pattern(host);
            if pattern.is_none() {
                errors.add(
                    format!("{path}.match.hosts[{i}]"),
                    format!("{host:?} must be a host name (letters, digits, '-', '.') or *.domain"),
                );
            }
            pattern
        })
        .collect();

    let (deployments, lines) =
        compile_deployments(path, &name, config.deployments, &config.lines, known, route_keys, errors);
    let sticky = config.sticky.and_then(|s| compile_sticky(&format!("{path}.sticky"), s, errors));

    let default_version = match config.default_version.as_str() {
        "latest" => DefaultVersion::Latest,
        "reject" => DefaultVersion::Reject,
        raw => match RequestedVersion::parse_str(raw) {
            Ok(v) if deployments.iter().any(|d| v.is_served_by(&d.version)) => DefaultVersion::Fixed(v),
            Ok(v) => {
                errors.add(format!("{path}.default_version"), format!("no deployment serves the default version {v}"));
                DefaultVersion::Reject
            }
            Err(e) => {
                errors.add(
                    format!("{path}.default_version"),
                    format!("{raw:?} is not \"latest\", \"reject\" or a version: {e}"),
                );
                DefaultVersion::Reject
            }
        },
    };

    let sources = config.sources.unwrap_or_else(|| Source::ALL.to_vec());
    for (i, source) in sources.iter().enumerate() {
        if sources.iter().take(i).any(|s| s == source) {
            errors.add(format!("{path}.sources[{i}]"), format!("source {:?} is listed twice", source.name()));
        }
    }

    let version_header = config.version_header.unwrap_or_else(|| DEFAULT_VERSION_HEADER.to_owned());
    if !is_header_name(&version_header) || version_header.starts_with(OWNED_HEADER_PREFIX) {
        errors.add(
            format!("{path}.version_header"),
            format!("{version_header:?} must be a lower-case header name not starting with {OWNED_HEADER_PREFIX:?}"),
        );
    }
    let query_param = config.query_param.unwrap_or_else(|| DEFAULT_QUERY_PARAM.to_owned());
    if query_param.is_empty() || !query_param.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
        errors.add(
            format!("{path}.query_param"),
            format!("{query_param:?} must be letters, digits, '-', '.', '_' or '~'"),
        );
    }
    if let Some(vendor) = &config.accept_vendor {
        if vendor.is_empty()
            || !vendor.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            errors.add(
                format!("{path}.accept_vendor"),
                format!("{vendor:?} must be lower-case letters, digits, '-' or '.'"),
            );
        }
    }

    let data = config.data.and_then(|model| {
        let deployed: Vec<Version> = deployments.iter().map(|d| d.version.clone()).collect();
        data::compile(model, &deployed)
            .map_err(|found| {
                for error in found {
                    errors.add(format!("{path}.data{}", error.path), error.message);
                }
            })
            .ok()
    });
    let supported_versions = deployments.iter().map(|d| d.version.to_string()).collect();
    Service {
        name,
        path_prefixes: matcher.path_prefixes,
        hosts,
        deployments,
        lines,
        default_version,
        sources,
        version_header,
        query_param,
        accept_vendor: config.accept_vendor,
        strip_version: config.rewrite.strip_version,
        set_version_header: config.rewrite.set_version_header,
        supported_versions,
        sticky,
        data,
    }
}

fn compile_lifecycle(path: &str, config: LifecycleConfig, errors: &mut Errors) -> Lifecycle {
    let mut instant = |field: &str, value: Option<String>| {
        value.and_then(|text| {
            let parsed = parse_instant(&text);
            if parsed.is_none() {
                errors.add(
                    format!("{path}.{field}"),
                    format!("{text:?} is not a date (2026-06-01) or UTC instant (2026-06-01T12:00:00Z)"),
                );
            }
            parsed
        })
    };
    let deprecated_at = instant("deprecated", config.deprecated);
    let sunset_at = instant("sunset", config.sunset);
    if let Some(successor) = &config.successor {
        if RequestedVersion::parse_str(successor).is_err() {
            errors.add(format!("{path}.successor"), format!("{successor:?} is not a version (like 2 or 2.1)"));
        }
    }
    if let Some(link) = &config.link {
        let is_url = (link.starts_with("https://") || link.starts_with("http://") || link.starts_with('/'))
            && link.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>' && b != b'"');
        if !is_url {
            errors.add(format!("{path}.link"), format!("{link:?} must be an http(s) URL or an absolute path"));
        }
    }
    Lifecycle::new(deprecated_at, sunset_at, config.successor, config.link.as_deref())
}

fn compile_sticky(path: &str, config: StickyConfig, errors: &mut Errors) -> Option<StickyKey> {
    match (config.header, config.cookie) {
        (Some(header), None) if is_header_name(&header) && !header.starts_with(OWNED_HEADER_PREFIX) => {
            Some(StickyKey::Header(header))
        }
        (Some(header), None) => {
            errors.add(
                format!("{path}.header"),
                format!("{header:?} must be a lower-case header name not starting with {OWNED_HEADER_PREFIX:?}"),
            );
            None
        }
        (None, Some(cookie))
            if !cookie.is_empty()
                && cookie.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)) =>
        {
            Some(StickyKey::Cookie(cookie))
        }
        (None, Some(cookie)) => {
            errors.add(format!("{path}.cookie"), format!("{cookie:?} is not a cookie name"));
            None
        }
        _ => {
            errors.add(path, "give exactly one of header or cookie");
            None
        }
    }
}

/// The deployments, oldest first, each compiled once together with its major line (whose
/// route it shares and whose lifecycle it inherits field by field), and the lines.
fn compile_deployments(
    path: &str,
    service: &str,
    configs: Vec<DeploymentConfig>,
    line_configs: &BTreeMap<String, LineConfig>,
    known: &BTreeSet<String>,
    route_keys: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> (Vec<Deployment>, Vec<Line>) {
    if configs.is_empty() {
        errors.add(format!("{path}.deployments"), "at least one deployment is needed");
    }
    let mut parsed: Vec<(String, Version, DeploymentConfig)> = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let at = format!("{path}.deployments[{i}]");
        match Version::parse(config.version.trim()) {
            Ok(v) if parsed.iter().any(|(_, seen, _)| *seen == v) => {
                errors.add(format!("{at}.version"), format!("version {v} is listed twice"));
            }
            Ok(v) => parsed.push((at, v, config)),
            Err(e) => errors.add(
                format!("{at}.version"),
                format!("{:?} is not a full semver version (like 2.1.0): {e}", config.version),
            ),
        }
    }
    parsed.sort_by(|a, b| a.1.cmp(&b.1));

    let mut lines: Vec<Line> = Vec::new();
    for (_, version, _) in &parsed {
        match lines.last_mut() {
            Some(line) if line.major == version.major => line.size += 1,
            _ => {
                let key = version.major.to_string();
                let route = line_configs.get(&key).and_then(|c| c.route.clone());
                let route = route.unwrap_or_else(|| format!("{service}-v{}", version.major));
                lines.push(Line { major: version.major, route, size: 1 });
            }
        }
    }
    let no_line = LineConfig::default();
    let deployments: Vec<Deployment> = parsed
        .into_iter()
        .map(|(at, version, config)| {
            let line = line_configs.get(&version.major.to_string()).unwrap_or(&no_line);
            compile_deployment(&at, service, version, config, &line.lifecycle, known, route_keys, errors)
        })
        .collect();
    for line in &lines {
        check_route_key(&format!("{path}.lines.{}.route", line.major), &line.route, route_keys, errors);
    }
    for key in line_configs.keys().filter(|k| !lines.iter().any(|l| l.major.to_string() == **k)) {
        errors.add(format!("{path}.lines.{key}"), format!("{key:?} is not the major of any deployment"));
    }
    // Weights describe shares within one line; half-given weights would leave the rest unknown.
    let mut start = 0;
    for line in &lines {
        let members = deployments.get(start..start + line.size).unwrap_or_default();
        start += line.size;
        let given: Vec<u32> = members.iter().filter_map(|d| d.weight).collect();
        if !given.is_empty() && (given.len() != members.len() || given.iter().sum::<u32>() != 100) {
            errors.add(
                format!("{path}.deployments"),
                format!(
                    "weights of the {}.x line must be given for every deployment of it and add up to 100",
                    line.major
                ),
            );
        }
    }
    (deployments, lines)
}

#[allow(clippy::too_many_arguments)] // The walk's context (path, service, line, keys seen, errors), passed as is.
fn compile_deployment(
    at: &str,
    service: &str,
    version: Version,
    config: DeploymentConfig,
    line_lifecycle: &LifecycleConfig,
    known: &BTreeSet<String>,
    route_keys: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> Deployment {
    // `+` (build metadata) is not allowed in route keys, so it becomes `_`.
    let route = config.route.unwrap_or_else(|| format!("{service}-{version}").replace('+', "_"));
    check_route_key(&format!("{at}.route"), &route, route_keys, errors);
    if let Some(weight) = config.weight.filter(|w| *w > 100) {
        errors.add(format!("{at}.weight"), format!("{weight} is not a percentage from 0 to 100"));
    }
    let mut accepts = Vec::new();
    for (caller, range) in &config.accepts {
        match VersionReq::parse(range) {
            Ok(req) => accepts.push((caller.clone(), req)),
            Err(e) => errors
                .add(format!("{at}.accepts.{caller}"), format!("{range:?} is not a semver range (like \"<2\"): {e}")),
        }
    }
    let requires = compile_requires(&format!("{at}.requires"), &config.requires, known, errors);
    let own = config.lifecycle;
    let merged = LifecycleConfig {
        deprecated: own.deprecated.or_else(|| line_lifecycle.deprecated.clone()),
        sunset: own.sunset.or_else(|| line_lifecycle.sunset.clone()),
        successor: own.successor.or_else(|| line_lifecycle.successor.clone()),
        link: own.link.or_else(|| line_lifecycle.link.clone()),
    };
    let lifecycle = compile_lifecycle(&format!("{at}.lifecycle"), merged, errors);
    Deployment { version, route, weight: config.weight, accepts, requires, lifecycle }
}

fn check_route_key(path: &str, key: &str, seen: &mut BTreeSet<String>, errors: &mut Errors) {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        errors.add(path, format!("route key {key:?} must be 1 to 128 letters, digits, '-', '.' or '_'"));
    } else if !seen.insert(key.to_owned()) {
        errors.add(path, format!("route key {key:?} is used twice in the catalog"));
    }
}

fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// A lower-case HTTP header name (RFC 9110 token), as Envoy hands them to filters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn host_pattern(host: &str) -> Option<HostPattern> {
    let host = host.to_ascii_lowercase();
    let valid =
        |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match host.strip_prefix("*.") {
        Some(domain) if valid(domain) => Some(HostPattern::Subdomains(format!(".{domain}"))),
        Some(_) => None,
        None if valid(&host) => Some(HostPattern::Exact(host)),
        None => None,
    }
}
