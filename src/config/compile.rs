//! Validation: turns the configuration as written into a [`Catalog`], collecting every
//! mistake with its JSON path instead of stopping at the first.

use super::catalog::{Catalog, DefaultVersion, Deployment, HostPattern, Line, Service};
use super::model::{DeploymentConfig, LifecycleConfig, LineConfig, PluginConfig, ServiceConfig, StickyConfig};
use super::{ConfigError, ConfigErrors};
use super::{DEFAULT_QUERY_PARAM, DEFAULT_ROUTE_HEADER, DEFAULT_VERSION_HEADER, OWNED_HEADER_PREFIX};
use crate::caller::CallerIdentity;
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
    let caller = config.caller.as_ref().and_then(|c| {
        let parsed = Version::parse(&c.version).ok();
        if parsed.is_none() {
            errors.add("$.caller.version", format!("{:?} is not a full semver version (like 2.0.0)", c.version));
        }
        if !is_service_name(&c.service) {
            errors.add("$.caller.service", format!("{:?} is not a service name", c.service));
        }
        parsed.map(|version| CallerIdentity { service: c.service.clone(), version })
    });
    let mut requires = BTreeMap::new();
    if let (Some(c), Some(identity)) = (&config.caller, &caller) {
        // The caller's requirements: given here, or those of its own deployment in the catalog.
        let own_deployment = config
            .services
            .iter()
            .filter(|s| s.name == c.service)
            .flat_map(|s| s.deployments.iter())
            .find(|d| Version::parse(d.version.trim()).ok().as_ref() == Some(&identity.version));
        let given = c.requires.is_some();
        let ranges = c.requires.clone().or_else(|| own_deployment.map(|d| d.requires.clone())).unwrap_or_default();
        for (service, range) in &ranges {
            match VersionReq::parse(range) {
                Ok(req) => {
                    requires.insert(service.clone(), req);
                }
                // A deployment's own ranges are reported at its path below.
                Err(e) if given => errors.add(
                    format!("$.caller.requires.{service}"),
                    format!("{range:?} is not a semver range (like \">=2.1, <3\"): {e}"),
                ),
                Err(_) => {}
            }
        }
    }
    for (i, service) in config.services.iter().enumerate() {
        for (j, deployment) in service.deployments.iter().enumerate() {
            for (callee, range) in &deployment.requires {
                let at = format!("$.services[{i}].deployments[{j}].requires.{callee}");
                if let Err(e) = VersionReq::parse(range) {
                    errors.add(&at, format!("{range:?} is not a semver range (like \">=2.1, <3\"): {e}"));
                }
                if !config.services.iter().any(|s| s.name == *callee) {
                    errors.add(at, format!("{callee:?} is not a service of this catalog"));
                }
            }
        }
    }
    if let Some(given) = config.caller.as_ref().and_then(|c| c.requires.as_ref()) {
        for service in given.keys().filter(|k| !config.services.iter().any(|s| s.name == **k)) {
            errors.add(format!("$.caller.requires.{service}"), format!("{service:?} is not a service of this catalog"));
        }
    }
    let mut names = BTreeSet::new();
    let mut route_keys = BTreeSet::new();
    let mut services = Vec::with_capacity(config.services.len());
    for (i, service) in config.services.into_iter().enumerate() {
        let path = format!("$.services[{i}]");
        if !names.insert(service.name.clone()) {
            errors.add(format!("{path}.name"), format!("service {:?} is listed twice", service.name));
        }
        let mut compiled = compile_service(&path, service, &mut route_keys, &mut errors);
        compiled.caller_requires = requires.get(&compiled.name).cloned();
        services.push(compiled);
    }
    if errors.0.is_empty() {
        Ok(Catalog { route_header, services, caller, trust_caller_headers: config.trust_caller_headers })
    } else {
        Err(ConfigErrors(errors.0))
    }
}

fn compile_service(
    path: &str,
    config: ServiceConfig,
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

    let (mut deployments, lifecycles) = compile_deployments(path, &name, config.deployments, route_keys, errors);
    let mut line_configs = config.lines;
    let lines = compile_lines(path, &name, &deployments, &mut line_configs, route_keys, errors);
    for (deployment, (at, own)) in deployments.iter_mut().zip(lifecycles) {
        let key = deployment.version.major.to_string();
        let line = line_configs.get(&key).map(|l| l.lifecycle.clone()).unwrap_or_default();
        let merged = LifecycleConfig {
            deprecated: own.deprecated.or(line.deprecated),
            sunset: own.sunset.or(line.sunset),
            successor: own.successor.or(line.successor),
            link: own.link.or(line.link),
        };
        deployment.lifecycle = compile_lifecycle(&at, merged, errors);
    }
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
        caller_requires: None,
        sticky,
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
    Lifecycle::new(deprecated_at, sunset_at, config.successor, config.link)
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

fn compile_deployments(
    path: &str,
    service: &str,
    configs: Vec<DeploymentConfig>,
    route_keys: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> (Vec<Deployment>, Vec<(String, LifecycleConfig)>) {
    if configs.is_empty() {
        errors.add(format!("{path}.deployments"), "at least one deployment is needed");
    }
    let mut deployments: Vec<Deployment> = Vec::with_capacity(configs.len());
    // Lifecycles are compiled once each deployment's line is known; kept in input order till then.
    let mut lifecycles: Vec<(String, LifecycleConfig)> = Vec::new();
    for (i, config) in configs.into_iter().enumerate() {
        let at = format!("{path}.deployments[{i}]");
        let version = match Version::parse(config.version.trim()) {
            Ok(v) => v,
            Err(e) => {
                errors.add(
                    format!("{at}.version"),
                    format!("{:?} is not a full semver version (like 2.1.0): {e}", config.version),
                );
                continue;
            }
        };
        if deployments.iter().any(|d| d.version == version) {
            errors.add(format!("{at}.version"), format!("version {version} is listed twice"));
            continue;
        }
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
                Err(e) => errors.add(
                    format!("{at}.accepts.{caller}"),
                    format!("{range:?} is not a semver range (like \"<2\"): {e}"),
                ),
            }
        }
        deployments.push(Deployment {
            version,
            route,
            weight: config.weight,
            accepts,
            lifecycle: Lifecycle::default(),
        });
        lifecycles.push((format!("{at}.lifecycle"), config.lifecycle));
    }
    let mut paired: Vec<(Deployment, (String, LifecycleConfig))> = deployments.into_iter().zip(lifecycles).collect();
    paired.sort_by(|a, b| a.0.version.cmp(&b.0.version));
    paired.into_iter().unzip()
}

fn compile_lines(
    path: &str,
    service: &str,
    deployments: &[Deployment],
    configs: &mut BTreeMap<String, LineConfig>,
    route_keys: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for deployment in deployments {
        match lines.last_mut() {
            Some(line) if line.major == deployment.version.major => line.size += 1,
            _ => lines.push(Line { major: deployment.version.major, route: String::new(), size: 1 }),
        }
    }
    for line in &mut lines {
        let key = line.major.to_string();
        let route = configs.get(&key).and_then(|c| c.route.clone());
        line.route = route.unwrap_or_else(|| format!("{service}-v{}", line.major));
        check_route_key(&format!("{path}.lines.{key}.route"), &line.route, route_keys, errors);
    }
    for key in configs.keys().filter(|k| !lines.iter().any(|l| l.major.to_string() == **k)) {
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
    lines
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
