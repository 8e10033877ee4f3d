//! `meshver status`: per deployment, the live weight and what Envoy measured, as a table or
//! as JSON (`--json`), both from one typed report.

use super::{to_json, Connected};
use crate::admin::snapshot::WeightSource;
use crate::catalog::{runtime_prefix, stable_index};
use crate::fail::Outcome;
use crate::flags::EnvoyFlags;
use crate::format::{millis, percent};
use crate::stats::{FilterCounts, Stats};
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
struct LineStatus {
    major: u64,
    route: String,
    runtime_prefix: String,
    deployments: Vec<DeploymentStatus>,
}

/// One deployment: its live weight and its cluster's counters since Envoy started.
#[derive(Debug, Serialize)]
struct DeploymentStatus {
    version: String,
    route: String,
    weight: u32,
    weight_source: WeightSource,
    stable: bool,
    requests: u64,
    errors_5xx: u64,
    /// A fraction (0.01 = 1%).
    error_rate: f64,
    /// None before the first request.
    p99_ms: Option<f64>,
}

pub fn run(envoy: &EnvoyFlags, as_json: bool) -> Outcome {
    let live = Connected::read(envoy)?;
    let stats = Stats::parse(&live.admin.stats().map_err(|e| e.fail(&live.admin))?);
    let report = Report {
        admin: live.admin.url.clone(),
        services: live
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                lines: service.lines.iter().map(|line| line_status(&live, &stats, service, line)).collect(),
                filter: stats.filter_counts(&service.name),
            })
            .collect(),
    };
    if as_json {
        print!("{}", to_json(&report)?);
    } else {
        println!("{}", table(&report));
        for service in &report.services {
            println!("{}", filter_summary(&service.name, &service.filter));
        }
    }
    Ok(())
}

fn line_status(live: &Connected, stats: &Stats, service: &Service, line: &Line) -> LineStatus {
    let deployments = service.line_deployments(line);
    let stable = stable_index(deployments);
    let weights = live.snapshot.line_weights(service, line);
    LineStatus {
        major: line.major,
        route: line.route.clone(),
        runtime_prefix: runtime_prefix(line),
        deployments: deployments
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (d, (weight, weight_source)))| {
                let sample = stats.cluster(&d.route);
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

fn table(report: &Report) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["SERVICE", "LINE", "VERSION", "ROUTE", "WEIGHT", "REQUESTS", "5XX", "ERRORS", "P99"]);
    for service in &report.services {
        for line in &service.lines {
            for d in &line.deployments {
                let stable = if d.stable { " (stable)" } else { "" };
                let runtime = if d.weight_source == WeightSource::Runtime { " (runtime)" } else { "" };
                table.add_row([
                    service.name.clone(),
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
