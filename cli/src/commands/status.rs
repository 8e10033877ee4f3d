//! `meshver status`: per deployment, the live weight and what Envoy measured.

use crate::admin::Admin;
use crate::catalog::{line_deployments, runtime_prefix, stable_index};
use crate::fail::Outcome;
use crate::live::{self, Snapshot};
use crate::stats::{millis, percent, Stats};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use serde_json::{json, Value};
use std::path::Path;

pub fn run(admin_url: &str, catalog: Option<&Path>, as_json: bool) -> Outcome {
    let admin = Admin::new(admin_url);
    let fail = |e: crate::admin::AdminError| e.fail(&admin);
    let snapshot = Snapshot::fetch(&admin).map_err(fail)?;
    let stats = Stats::parse(&admin.stats().map_err(fail)?);
    let services = live::services(catalog, &snapshot.discovered, &admin)?;

    let mut report = Vec::new();
    for service in &services {
        let mut lines = Vec::new();
        for line in &service.lines {
            let deployments = line_deployments(service, line);
            let weights = live::line_weights(service, line, &snapshot.runtime, &snapshot.discovered);
            let stable = stable_index(deployments);
            let rows: Vec<Value> = deployments
                .iter()
                .zip(weights)
                .enumerate()
                .map(|(i, (d, (weight, source)))| {
                    let sample = stats.cluster(&d.route);
                    json!({
                        "version": d.version.to_string(),
                        "route": d.route,
                        "weight": weight,
                        "weight_source": source.name(),
                        "stable": i == stable,
                        "requests": sample.requests,
                        "errors_5xx": sample.errors,
                        "error_rate": sample.error_rate(),
                        "p99_ms": sample.quantile_ms(0.99),
                    })
                })
                .collect();
            lines.push(json!({
                "major": line.major,
                "route": line.route,
                "runtime_prefix": runtime_prefix(line),
                "deployments": rows,
            }));
        }
        report.push(json!({"name": service.name, "lines": lines}));
    }
    let report = json!({"admin": admin.url, "services": report});
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!("{}", table(&report));
    }
    Ok(())
}

fn table(report: &Value) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["SERVICE", "LINE", "VERSION", "ROUTE", "WEIGHT", "REQUESTS", "5XX", "ERRORS", "P99"]);
    let empty = Vec::new();
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).unwrap_or(&empty).clone();
    for service in list(report, "services") {
        for line in list(&service, "lines") {
            for d in list(&line, "deployments") {
                let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
                let number = |key: &str| d.get(key).and_then(Value::as_u64).unwrap_or(0);
                let stable = if d.get("stable").and_then(Value::as_bool) == Some(true) { " (stable)" } else { "" };
                let source = text("weight_source");
                let weight = if source == "runtime" {
                    format!("{}% (runtime)", number("weight"))
                } else {
                    format!("{}%", number("weight"))
                };
                table.add_row([
                    service.get("name").and_then(Value::as_str).unwrap_or("").to_owned(),
                    line.get("route").and_then(Value::as_str).unwrap_or("").to_owned(),
                    format!("{}{stable}", text("version")),
                    text("route"),
                    weight,
                    number("requests").to_string(),
                    number("errors_5xx").to_string(),
                    percent(d.get("error_rate").and_then(Value::as_f64).unwrap_or(0.0)),
                    d.get("p99_ms").and_then(Value::as_f64).map_or("-".to_owned(), millis),
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
