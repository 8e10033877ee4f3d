//! `meshver status`: per deployment, the live weight and what Envoy measured, as a table or
//! as JSON (`--json`), both from one typed report; with `--runtime-dir`, a fleet's weights and
//! which of its Envoys use them.

use super::{emit, to_json, Connected};
use crate::admin::snapshot::{Snapshot, WeightSource};
use crate::catalog::{runtime_prefix, stable_index};
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use crate::fleet::converge::{State, Written};
use crate::fleet::{not_converged, Fleet, Source};
use crate::format::{millis, percent};
use crate::stats::{ClusterSample, FilterCounts, Stats};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use meshver::config::{Line, Service};
use serde::Serialize;

/// What `status` reports (the `--json` shape, see cli/README.md).
#[derive(Debug, Serialize)]
struct Report {
    admin: String,
    services: Vec<ServiceStatus>,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    name: String,
    lines: Vec<LineStatus>,
    /// What the filters counted for the service.
    filter: FilterCounts,
}

#[derive(Debug, Serialize)]
pub(super) struct LineStatus {
    major: u64,
    pub route: String,
    runtime_prefix: String,
    pub deployments: Vec<DeploymentStatus>,
}

/// One deployment: its live weight and its cluster's counters (since Envoy started for
/// `status`, over the window for `status --watch`).
#[derive(Debug, Serialize)]
pub(super) struct DeploymentStatus {
    pub version: String,
    pub route: String,
    pub weight: u32,
    pub weight_source: WeightSource,
    pub stable: bool,
    pub requests: u64,
    pub errors_5xx: u64,
    /// A fraction (0.01 = 1%).
    pub error_rate: f64,
    /// None before the first request.
    pub p99_ms: Option<f64>,
}

pub fn run(envoy: &EnvoyFlags, as_json: bool) -> Outcome {
    if envoy.runtime_dir.is_some() {
        return run_fleet(envoy, as_json);
    }
    let live = Connected::read(envoy)?;
    let stats = Stats::parse(&live.admin.stats().map_err(|e| e.fail(&live.admin))?);
    let report = Report {
        admin: live.admin.url.clone(),
        services: live
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                lines: line_statuses(&live, service, &|route| stats.cluster(route)),
                filter: stats.filter_counts(&service.name),
            })
            .collect(),
    };
    // Written, not printed: a closed pipe (`| head`) is an error line, not a panic.
    if as_json {
        emit(None, &to_json(&report)?)
    } else {
        let lines = report.services.iter().map(|s| (s.name.as_str(), s.lines.as_slice()));
        let mut text = format!("{}\n", table(lines));
        for service in &report.services {
            text.push_str(&format!("{}\n", filter_summary(&service.name, &service.filter)));
        }
        emit(None, &text)
    }
}

/// What `status --runtime-dir` reports: the folder's weights, whether each Envoy listed uses
/// them, and the deployments' numbers summed over the Envoys that answered.
#[derive(Debug, Serialize)]
struct FleetReport {
    runtime_dir: String,
    version: u64,
    envoys: Vec<EnvoyState>,
    services: Vec<FleetService>,
}

#[derive(Debug, Serialize)]
struct FleetService {
    name: String,
    lines: Vec<LineStatus>,
}

/// One Envoy of the fleet against the folder's current version.
#[derive(Debug, Serialize)]
struct EnvoyState {
    name: String,
    admin: String,
    converged: bool,
    /// What it uses, for people (why not, when it does not).
    detail: String,
}

/// `status --runtime-dir DIR [--admin …]`: the weights the folder holds, each Envoy listed
/// against its current version (waiting up to --converge-timeout), and the deployments'
/// requests, 5xx and p99 since each Envoy started, summed; exit 1 when an Envoy lags.
fn run_fleet(envoy: &EnvoyFlags, as_json: bool) -> Outcome {
    let fleet = Fleet::open(envoy)?;
    let Source::Folder(folder) = &fleet.source else {
        return Err(Fail::new("status of a fleet needs its runtime folder", "give --runtime-dir DIR"));
    };
    let current = folder.read()?;
    let written = Written {
        values: current.values.clone().into_iter().collect(),
        version: Some(current.number),
        folder: Some(current.folder.clone()),
    };
    let reports = fleet.converge(&written);
    // An Envoy that did not answer the check is not asked again.
    let stats: Vec<Stats> = reports
        .iter()
        .filter(|r| !matches!(r.state, State::Silent(_)))
        .filter_map(|r| crate::admin::Admin::new(&r.member.url).stats().ok())
        .map(|body| Stats::parse(&body))
        .collect();
    let summed = |route: &str| {
        stats.iter().map(|s| s.cluster(route)).fold(ClusterSample::default(), |mut all, one| {
            all.requests += one.requests;
            all.errors += one.errors;
            all.latency.extend(one.latency);
            all
        })
    };
    let services = fleet
        .services
        .iter()
        .map(|service| FleetService { name: service.name.clone(), lines: lines_of(&fleet.snapshot, service, &summed) })
        .collect();
    let envoys: Vec<EnvoyState> = reports
        .iter()
        .map(|r| EnvoyState {
            name: r.member.name.clone(),
            admin: r.member.url.clone(),
            converged: r.state == State::Converged,
            detail: match r.state {
                State::Converged => format!("uses version {}", current.number),
                _ => r.what(),
            },
        })
        .collect();
    let report =
        FleetReport { runtime_dir: folder.path.display().to_string(), version: current.number, envoys, services };
    if as_json {
        emit(None, &to_json(&report)?)?;
    } else {
        let lines = report.services.iter().map(|s| (s.name.as_str(), s.lines.as_slice()));
        let mut text = format!("{}\nruntime folder {}, version {}\n", table(lines), report.runtime_dir, report.version);
        for e in &report.envoys {
            let mark = if e.converged { "ok" } else { "LAGGING" };
            text.push_str(&format!("{mark} {} ({}): {}\n", e.name, e.admin, e.detail));
        }
        emit(None, &text)?;
    }
    let lagging: Vec<String> = reports.iter().filter(|r| r.state != State::Converged).map(|r| r.describe()).collect();
    if lagging.is_empty() {
        Ok(())
    } else {
        Err(not_converged(&lagging, &fleet))
    }
}

/// Each line of `service` with its deployments' live weights and the numbers `sample` gives of
/// each deployment's cluster (by route key).
pub(super) fn line_statuses(
    live: &Connected,
    service: &Service,
    sample: &dyn Fn(&str) -> ClusterSample,
) -> Vec<LineStatus> {
    lines_of(&live.snapshot, service, sample)
}

/// Each line of `service` with the live weights `snapshot` holds and the numbers of `sample`.
fn lines_of(snapshot: &Snapshot, service: &Service, sample: &dyn Fn(&str) -> ClusterSample) -> Vec<LineStatus> {
    service.lines.iter().map(|line| line_status(snapshot, service, line, sample)).collect()
}

fn line_status(
    snapshot: &Snapshot,
    service: &Service,
    line: &Line,
    sample: &dyn Fn(&str) -> ClusterSample,
) -> LineStatus {
    let deployments = service.line_deployments(line);
    let stable = stable_index(deployments);
    let weights = snapshot.line_weights(service, line);
    LineStatus {
        major: line.major,
        route: line.route.clone(),
        runtime_prefix: runtime_prefix(line),
        deployments: deployments
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (d, (weight, weight_source)))| {
                let sample = sample(&d.route);
                DeploymentStatus {
                    version: d.version.to_string(),
                    route: d.route.clone(),
                    weight,
                    weight_source,
                    stable: i == stable,
                    requests: sample.requests,
                    errors_5xx: sample.errors,
                    error_rate: sample.error_rate(),
                    p99_ms: sample.quantile_ms(0.99),
                }
            })
            .collect(),
    }
}

/// One line of what the filters decided for a service, e.g.
/// `user: 120 forwarded, 4 refused (unsupported_version 3, malformed_version 1); deprecated 1.x used by order 3`.
fn filter_summary(service: &str, counts: &FilterCounts) -> String {
    let listed = |counts: &std::collections::BTreeMap<String, u64>| {
        let mut pairs: Vec<(&String, &u64)> = counts.iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        pairs.iter().map(|(name, count)| format!("{name} {count}")).collect::<Vec<_>>().join(", ")
    };
    let refused: u64 = counts.refused.values().sum();
    let mut line = format!("{service}: {} forwarded, {refused} refused", counts.forwarded);
    if refused > 0 {
        line.push_str(&format!(" ({})", listed(&counts.refused)));
    }
    for (version, by_caller) in &counts.deprecated {
        line.push_str(&format!("; deprecated {version}.x used by {}", listed(by_caller)));
    }
    line
}

/// One row per deployment of each service's lines.
fn table<'a>(services: impl Iterator<Item = (&'a str, &'a [LineStatus])>) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["SERVICE", "LINE", "VERSION", "ROUTE", "WEIGHT", "REQUESTS", "5XX", "ERRORS", "P99"]);
    for (name, lines) in services {
        for line in lines {
            for d in &line.deployments {
                let stable = if d.stable { " (stable)" } else { "" };
                let runtime = if d.weight_source == WeightSource::Runtime { " (runtime)" } else { "" };
                table.add_row([
                    name.to_owned(),
                    line.route.clone(),
                    format!("{}{stable}", d.version),
                    d.route.clone(),
                    format!("{}%{runtime}", d.weight),
                    d.requests.to_string(),
                    d.errors_5xx.to_string(),
                    percent(d.error_rate),
                    d.p99_ms.map_or("-".to_owned(), millis),
                ]);
            }
        }
    }
    for column in 4..9 {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn summarises_what_the_filters_counted() {
        let counts = FilterCounts {
            forwarded: 120,
            refused: BTreeMap::from([("malformed_version".into(), 1), ("unsupported_version".into(), 3)]),
            deprecated: BTreeMap::from([("1".into(), BTreeMap::from([("order".into(), 3), ("none".into(), 5)]))]),
        };
        assert_eq!(
            filter_summary("user", &counts),
            "user: 120 forwarded, 4 refused (unsupported_version 3, malformed_version 1); \
             deprecated 1.x used by none 5, order 3"
        );
        assert_eq!(filter_summary("order", &FilterCounts::default()), "order: 0 forwarded, 0 refused");
    }
}
