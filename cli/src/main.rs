//! `meshver`: the operator's command line for the meshver filter.
//!
//! Every command either succeeds or prints one line `meshver: <what is wrong>; <what to do>`
//! (exit 1); usage errors are clap's (exit 2); an interrupted rollout exits 130.
//!
//! This file is the command line (clap) and the dispatch; each command is in `commands/`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod admin;
mod catalog;
mod commands;
mod compat;
mod compiled;
mod fail;
mod flags;
mod fleet;
mod format;
mod istio_engine;
mod judge;
mod mesh;
mod prometheus;
mod render;
mod stats;
mod weights;

use clap::{Parser, Subcommand};
use commands::rollout::RolloutArgs;
use fail::Outcome;
use flags::{BadFlag, EnvoyFlags, Steps};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Check a mesh file's catalogs, then write them where its Envoy takes them live.
    Publish {
        mesh: PathBuf,
        /// Write the wasm path relative to this folder, as `render envoy` did.
        #[arg(long, value_name = "DIR")]
        wasm_relative_to: Option<PathBuf>,
    },
    /// Show live weights, requests, 5xx, error rate and p99 per deployment.
    Status {
        #[command(flatten)]
        envoy: EnvoyFlags,
        /// Print JSON for scripts.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Redraw every --interval: weight, traffic share, requests/s, error rate and p99 over
        /// --window, with charts; q or Ctrl-C quits.
        #[arg(long)]
        watch: bool,
        /// How often --watch reads the admin and redraws.
        #[arg(long, default_value = "1s", value_parser = flags::duration("--interval"), requires = "watch")]
        interval: Duration,
        /// How far back --watch's numbers reach.
        #[arg(long, default_value = "5m", value_parser = flags::duration("--window"), requires = "watch")]
        window: Duration,
        /// Stop --watch after N redraws (for scripts).
        #[arg(long, value_name = "N", value_parser = flags::count("--count"), requires = "watch")]
        count: Option<u64>,
    },
    /// Set one deployment's share of its line; the rest of the line shares the remainder.
    Shift {
        service: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_name = "0-100", value_parser = flags::weight)]
        weight: u32,
        /// Send traffic even to a deployment whose contract refuses bodies its line accepted.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        envoy: EnvoyFlags,
    },
    /// Send all of a line's weight back to its stable deployment, at once.
    Rollback {
        service: String,
        /// The major line (default: every line with more than one deployment).
        #[arg(long, value_name = "MAJOR")]
        line: Option<u64>,
        #[command(flatten)]
        envoy: EnvoyFlags,
    },
    /// Raise a deployment's weight step by step; roll back automatically on a breach.
    Rollout {
        service: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "5,25,50,100", value_parser = flags::steps)]
        steps: Steps,
        #[arg(long, default_value = "30s", value_parser = flags::duration("--interval"))]
        interval: Duration,
        #[arg(long, default_value = "1%", value_parser = flags::fraction("--max-error-rate"))]
        max_error_rate: f64,
        #[arg(long, value_parser = flags::duration("--max-p99"))]
        max_p99: Option<Duration>,
        /// Fewer requests to the new deployment in an interval cannot be judged: through an
        /// admin the step fails; with --prometheus it waits up to 3 more intervals for them, then
        /// rolls back. Default 0, or 20 with --prometheus.
        #[arg(long, value_name = "N")]
        min_requests: Option<u64>,
        /// Judge each step from this Prometheus server's PromQL over every sidecar it scrapes.
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        /// Label matchers added to every --prometheus query, e.g. job="mesh".
        #[arg(long, value_name = "MATCHERS", default_value = "", requires = "prometheus")]
        prometheus_selector: String,
        /// Print the weights of each step, where they go and how each step is judged (the
        /// PromQL with --prometheus), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send traffic even to a deployment whose contract refuses bodies its line accepted.
        #[arg(long)]
        force: bool,
        /// Before the first step, mirror this share of the line's GET, HEAD and OPTIONS requests
        /// to the new deployment for one --interval, and stop there if it fails.
        #[arg(long, value_name = "PERCENT", value_parser = flags::weight)]
        shadow: Option<u32>,
        /// With --shadow, mirror every method (a mirrored POST, PUT or DELETE is done twice).
        #[arg(long, requires = "shadow")]
        shadow_all_methods: bool,
        #[command(flatten)]
        envoy: EnvoyFlags,
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
        /// The header filter's host: the wasm module, or the native module libmeshver.so (a
        /// plain Envoy 1.40, the module on ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
        #[arg(long, value_enum, default_value_t)]
        host: render::envoy::FilterHost,
    },
    /// Istio WasmPlugins, DestinationRules and VirtualServices (multi-document YAML).
    Istio {
        catalog: PathBuf,
        #[arg(long)]
        namespace: Option<String>,
        /// Where Istio fetches the module (oci://, https:// or file://; a reference without a
        /// scheme is an OCI image).
        #[arg(long, default_value = "file:///etc/istio/extensions/meshver.wasm")]
        image: String,
        /// The WasmPlugin's sha256, which Istio checks the fetch against: for an oci:// image the
        /// image digest (as `make oci` prints it), for https:// the module's sha256.
        #[arg(long, value_name = "sha256:HEX")]
        image_digest: Option<String>,
        /// Where Istio fetches the body filter module, for a catalog with `data` (default:
        /// meshver_body.wasm in place of an --image that ends in /meshver.wasm).
        #[arg(long, value_name = "URL")]
        body_image: Option<String>,
        /// As --image-digest, for --body-image.
        #[arg(long, value_name = "sha256:HEX")]
        body_image_digest: Option<String>,
        /// Label of the workloads that run the filter, KEY=VALUE (repeatable; default: all).
        #[arg(long, value_name = "KEY=VALUE", value_parser = flags::label)]
        selector: Vec<(String, String)>,
        /// What a sidecar does once the filter's VM has failed (the WasmPlugins' failStrategy).
        #[arg(long, value_enum, default_value_t)]
        failure_policy: mesh::FailurePolicy,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() {
    let outcome = match Cli::try_parse() {
        Ok(cli) => run(cli.command),
        // A bad value gets the usual one line; other usage errors (and --help) are clap's.
        Err(error) => Err(BadFlag::from_clap(&error).unwrap_or_else(|| error.exit())),
    };
    if let Err(fail) = outcome {
        let mut stderr = std::io::stderr().lock();
        for line in &fail.lines {
            let _ = writeln!(stderr, "{line}");
        }
        std::process::exit(fail.code);
    }
}

fn run(command: Command) -> Outcome {
    match command {
        Command::Check { config, json } => commands::check::run(&config, json),
        Command::Render(RenderCommand::Envoy { mesh, output, wasm_relative_to, host }) => {
            commands::render::envoy(&mesh, wasm_relative_to, host, output.as_deref())
        }
        Command::Render(RenderCommand::Istio {
            catalog,
            namespace,
            image,
            image_digest,
            body_image,
            body_image_digest,
            selector,
            failure_policy,
            output,
        }) => {
            let selector = selector.into_iter().collect();
            let options = render::istio::IstioOptions {
                namespace,
                image,
                image_digest,
                body_image,
                body_image_digest,
                selector,
                failure_policy,
            };
            commands::render::istio(&catalog, &options, output.as_deref())
        }
        Command::Publish { mesh, wasm_relative_to } => commands::publish::run(&mesh, wasm_relative_to),
        Command::Status { envoy, .. } if envoy.istio.istio => Err(fail::Fail::new(
            "status reads Envoys' admins, not Istio's VirtualServices (--istio)",
            "give --admin URL or --runtime-dir DIR; under Istio, `kubectl get virtualservice` shows the weights and Prometheus the traffic",
        )),
        Command::Status { envoy, watch: true, interval, window, count, .. } => {
            commands::watch::run(&envoy, &commands::watch::WatchArgs { interval, window, count })
        }
        Command::Status { envoy, json, .. } => commands::status::run(&envoy, json),
        Command::Shift { service, to, weight, force, envoy } if envoy.istio.istio => {
            istio_engine::shift(&service, &to, weight, force, &envoy)
        }
        Command::Rollback { service, line, envoy } if envoy.istio.istio => {
            istio_engine::rollback(&service, line, &envoy)
        }
        Command::Shift { service, to, weight, force, envoy } => {
            commands::shift::run(&service, &to, weight, force, &envoy)
        }
        Command::Rollback { service, line, envoy } => commands::rollback::run(&service, line, &envoy),
        Command::Rollout {
            service,
            to,
            steps,
            interval,
            max_error_rate,
            max_p99,
            min_requests,
            force,
            shadow,
            shadow_all_methods,
            prometheus,
            prometheus_selector,
            dry_run,
            envoy,
        } => {
            let args = RolloutArgs {
                service: &service,
                to: &to,
                steps: &steps,
                interval,
                limits: judge::Limits {
                    max_error_rate,
                    max_p99_ms: max_p99.map(|d| d.as_secs_f64() * 1000.0),
                    min_requests: min_requests.unwrap_or(if prometheus.is_some() { 20 } else { 0 }),
                },
                force,
                shadow: shadow.map(|percent| commands::rollout::Shadow { percent, all_methods: shadow_all_methods }),
                prometheus,
                prometheus_selector,
                dry_run,
                envoy: &envoy,
            };
            if args.envoy.istio.istio {
                istio_engine::rollout(&args)
            } else {
                commands::rollout::run(&args)
            }
        }
    }
}
