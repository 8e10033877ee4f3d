//! `meshver status`: per deployment, the live weight and what Envoy measured, as a table or
//! as JSON (`--json`), both from one typed report.

use super::{to_json, Connected};
use crate::admin::snapshot::WeightSource;
use crate::catalog::{runtime_prefix, stable_index};
use crate::fail::Outcome;
use crate::flags::EnvoyFlags;
use crate::format::{millis, percent};
use crate::stats::Stats;
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
            })
            .collect(),
    };
    if as_json {
        print!("{}", to_json(&report)?);
    } else {
        println!("{}", table(&report));
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
