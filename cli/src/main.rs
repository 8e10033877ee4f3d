//! `meshver`: the operator's command line for the meshver filter.
//!
//! Every command either succeeds or prints one line `meshver: <what is wrong>; <what to do>`
//! (exit 1); usage errors are clap's (exit 2); an interrupted rollout exits 130.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod admin;
mod catalog;
mod compiled;
mod fail;
mod live;
mod mesh;
mod ops;
mod render;
mod stats;
mod status;
mod weights;

use clap::{Parser, Subcommand};
use fail::{Fail, Outcome};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "meshver",
    version,
    about = "Operate meshver: check catalogs, render mesh config, move traffic between versions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a catalog exactly as the filter does; print every error with its JSON path.
    Check {
        config: PathBuf,
        /// Print the compiled catalog as JSON (routes, defaults, weights, lifecycles).
        #[arg(long)]
        json: bool,
    },
    /// Render mesh configuration.
    #[command(subcommand)]
    Render(RenderCommand),
    /// Show live weights, requests, 5xx, error rate and p99 per deployment.
    Status {
        #[arg(long)]
        admin: String,
        /// The catalog; default: the one in the running filter's config.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set one deployment's share of its line; the rest of the line shares the remainder.
    Shift {
        service: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_name = "0-100")]
        weight: String,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Send all of a line's weight back to its stable deployment, at once.
    Rollback {
        service: String,
        /// The major line (default: every line with more than one deployment).
        #[arg(long, value_name = "MAJOR")]
        line: Option<u64>,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Raise a deployment's weight step by step; roll back automatically on a breach.
    Rollout {
        service: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "5,25,50,100")]
        steps: String,
        #[arg(long, default_value = "30s")]
        interval: String,
        #[arg(long, default_value = "1%")]
        max_error_rate: String,
        #[arg(long)]
        max_p99: Option<String>,
        /// Fewer requests to the new deployment in an interval fail the step.
        #[arg(long, default_value_t = 0)]
        min_requests: u64,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RenderCommand {
    /// A complete Envoy v3 bootstrap (JSON) from a mesh file.
    Envoy {
        mesh: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write the wasm path relative to this folder (for configs run from it).
        #[arg(long, value_name = "DIR")]
        wasm_relative_to: Option<PathBuf>,
    },
    /// Istio WasmPlugin, DestinationRules and VirtualServices (multi-document YAML).
    Istio {
        catalog: PathBuf,
        #[arg(long)]
        namespace: Option<String>,
        /// Where Istio fetches the module (oci://, https:// or file://).
        #[arg(long, default_value = "file:///etc/istio/extensions/meshver.wasm")]
        image: String,
        /// Label of the workloads that run the filter, KEY=VALUE (repeatable; default: all).
        #[arg(long, value_name = "KEY=VALUE")]
        selector: Vec<String>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(fail) = run(cli.command) {
        let mut stderr = std::io::stderr().lock();
        for line in &fail.lines {
            let _ = writeln!(stderr, "{line}");
        }
        std::process::exit(fail.code);
    }
}

fn run(command: Command) -> Outcome {
    match command {
        Command::Check { config, json } => check(&config, json),
        Command::Render(RenderCommand::Envoy { mesh, output, wasm_relative_to }) => {
            let wasm = match wasm_relative_to {
                Some(dir) => render::envoy::WasmPath::RelativeTo(dir),
                None => render::envoy::WasmPath::Absolute,
            };
            let config = render::envoy::render(&mesh, &wasm)?;
            let text = serde_json::to_string_pretty(&config)
                .map_err(|e| Fail::new(format!("cannot write JSON: {e}"), "report this as a bug"))?;
            emit(output.as_deref(), &format!("{text}\n"))
        }
        Command::Render(RenderCommand::Istio { catalog, namespace, image, selector, output }) => {
            let file = catalog::load_file(&catalog)?;
            let selector = selector
                .iter()
                .map(|s| {
                    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| {
                        Fail::new(format!("selector {s:?} is not KEY=VALUE"), "write it like --selector app=gateway")
                    })
                })
                .collect::<Outcome<BTreeMap<_, _>>>()?;
            let options = render::istio::IstioOptions { namespace, image, selector };
            let resources = render::istio::render(&file, &options)?;
            emit(output.as_deref(), &render::istio::to_yaml(&resources)?)
        }
        Command::Status { admin, catalog, json } => status::run(&admin, catalog.as_deref(), json),
        Command::Shift { service, to, weight, admin, catalog } => {
            ops::shift(&service, &to, &weight, &admin, catalog.as_deref())
        }
        Command::Rollback { service, line, admin, catalog } => {
            ops::rollback(&service, line, &admin, catalog.as_deref())
        }
        Command::Rollout { service, to, steps, interval, max_error_rate, max_p99, min_requests, admin, catalog } => {
            ops::rollout(&ops::RolloutArgs {
                service: &service,
                to: &to,
                steps: &steps,
                interval: &interval,
                max_error_rate: &max_error_rate,
                max_p99: max_p99.as_deref(),
                min_requests,
                admin: &admin,
                catalog: catalog.as_deref(),
            })
        }
    }
}

/// `meshver check`: the filter's own validation, one line per error; with `--json`, the
/// compiled catalog.
fn check(path: &Path, json: bool) -> Outcome {
    let file = catalog::load_file(path)?;
    if json {
        let compiled = compiled::CompiledCatalog::new(&file.catalog);
        let text = serde_json::to_string_pretty(&compiled)
            .map_err(|e| Fail::new(format!("cannot write JSON: {e}"), "report this as a bug"))?;
        return emit(None, &format!("{text}\n"));
    }
    let services = &file.catalog.services;
    let deployments: usize = services.iter().map(|s| s.deployments.len()).sum();
    println!("{}: ok, {} services, {deployments} deployments", path.display(), services.len());
    Ok(())
}

fn emit(output: Option<&Path>, text: &str) -> Outcome {
    match output {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            Fail::new(format!("cannot write {}: {e}", path.display()), "check the folder exists and is writable")
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .map_err(|e| Fail::new(format!("cannot write to stdout: {e}"), "check the pipe"))
        }
    }
}
