//! `shift`, `rollback` and `rollout` with `--istio`: the same choices as on Envoy, written into the
//! VirtualService by a merge patch (printed, or applied with kubectl when `--apply` is given).

use super::kubectl::{Kubectl, KubectlError};
use super::queries::{istio_queries, Reporter};
use super::{live_weights, merge_patch, virtual_service_name, IstioFlags};
use crate::admin::retry;
use crate::catalog::{configured_weights, find_deployment, find_service, load_file, stable_index, CatalogFile};
use crate::commands::rollout::progress::measure_after;
use crate::commands::rollout::{candidate, Candidate, RolloutArgs, EXIT_INTERRUPTED};
use crate::commands::to_json;
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use crate::format::{millis, percent};
use crate::judge::{judge, Observed};
use crate::prometheus::{measure, Measured, Prometheus};
use crate::render::istio::{Mirror, Routing};
use crate::weights;
use meshver::config::Service;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The catalog (`--catalog`, which `--istio` requires) and kubectl.
struct Engine {
    catalog: CatalogFile,
    kubectl: Kubectl,
}

impl Engine {
    fn open(envoy: &EnvoyFlags) -> Outcome<Engine> {
        let Some(path) = &envoy.catalog else {
            return Err(Fail::new(
                "--istio needs the catalog the VirtualServices were rendered from",
                "give --catalog FILE",
            ));
        };
        Ok(Engine { catalog: load_file(path)?, kubectl: Kubectl::new(&envoy.istio) })
    }

    /// Every line's live weights (the catalog's where the VirtualService does not say).
    fn live(&self, service: &Service) -> Outcome<BTreeMap<String, Vec<u32>>> {
        let found = self.kubectl.get_virtual_service(virtual_service_name(service)).map_err(|e| e.fail())?;
        let found = live_weights(service, &found);
        Ok(service
            .lines
            .iter()
            .map(|line| {
                let weights = found
                    .get(&line.route)
                    .cloned()
                    .unwrap_or_else(|| configured_weights(service.line_deployments(line)));
                (line.route.clone(), weights)
            })
            .collect())
    }

    /// Applies `routing` to the service's VirtualService, or prints its merge patch.
    fn write(&self, service: &Service, routing: &Routing, istio: &IstioFlags) -> Outcome<bool> {
        let patch = merge_patch(service, &self.catalog.catalog.route_header, istio.namespace.as_deref(), routing);
        if istio.apply {
            self.kubectl.patch_virtual_service(virtual_service_name(service), &patch).map_err(|e| e.fail())?;
        } else {
            crate::commands::emit(None, &to_json(&patch)?)?;
        }
        Ok(istio.apply)
    }

    fn service<'a>(&'a self, name: &str) -> Outcome<&'a Service> {
        find_service(&self.catalog.catalog.services, name)
    }
}

/// What was done, for the line printed after an applied change.
fn applied(service: &Service, istio: &IstioFlags) -> String {
    let ns = istio.namespace.as_deref().map_or(String::new(), |ns| format!(" in {ns}"));
    format!("(VirtualService {}{ns} patched)", virtual_service_name(service))
}

/// `shift SERVICE --to VERSION --weight N --istio`.
pub fn shift(service: &str, to: &str, weight: u32, force: bool, envoy: &EnvoyFlags) -> Outcome {
    let engine = Engine::open(envoy)?;
    let istio = &envoy.istio;
    let service = engine.service(service)?;
    let (line, index) = find_deployment(service, to)?;
    let deployments = service.line_deployments(line);
    if let Some(target) = deployments.get(index).filter(|_| weight > 0) {
        crate::compat::refuse_breaking(service, target, force)?;
    }
    let mut live = engine.live(service)?;
    let current = live.get(&line.route).cloned().unwrap_or_else(|| configured_weights(deployments));
    let next = weights::shift(&current, index, weight);
    live.insert(line.route.clone(), next.clone());
    if engine.write(service, &Routing { weights: live, mirror: None }, istio)? {
        let described = crate::commands::shift::describe(deployments, &next);
        println!("{} {}: {described} {}", service.name, line.route, applied(service, istio));
    }
    Ok(())
}

/// `rollback SERVICE [--line MAJOR] --istio`: the line (or every line of several deployments) all on
/// its stable deployment; a shadow step's mirror goes too.
pub fn rollback(service: &str, major: Option<u64>, envoy: &EnvoyFlags) -> Outcome {
    let engine = Engine::open(envoy)?;
    let istio = &envoy.istio;
    let service = engine.service(service)?;
    let lines = crate::commands::rollback::lines_to_roll_back(service, major)?;
    let mut live = engine.live(service)?;
    let mut done = Vec::new();
    for line in lines {
        let deployments = service.line_deployments(line);
        let stable = stable_index(deployments);
        live.insert(line.route.clone(), weights::all_on(deployments.len(), stable));
        if let Some(d) = deployments.get(stable) {
            done.push(format!("{} {}: {} 100%", service.name, line.route, d.version));
        }
    }
    if engine.write(service, &Routing { weights: live, mirror: None }, istio)? {
        for line in done {
            println!("rolled back {line} {}", applied(service, istio));
        }
    }
    Ok(())
}

/// `rollout SERVICE --to VERSION --istio --apply --prometheus URL`: each step (and a shadow step
/// before them) is a patch of the VirtualService, judged from Istio's metrics in Prometheus over
/// the interval; a breach or Ctrl-C patches the line back onto its stable deployment.
pub fn rollout(args: &RolloutArgs) -> Outcome {
    let istio = &args.envoy.istio;
    let engine = Engine::open(args.envoy)?;
    let service = engine.service(args.service)?;
    let Candidate { line, index, deployments, stable, target, stable_deployment } =
        candidate(service, args.to, args.force)?;
    let Some(url) = &args.prometheus else {
        return Err(Fail::new(
            "under Istio a rollout is judged from Istio's metrics in Prometheus",
            "give --prometheus URL (the Prometheus that scrapes the mesh's proxies)",
        ));
    };
    if !istio.apply && !args.dry_run {
        return Err(Fail::new(
            "a rollout under Istio patches the VirtualService at every step",
            "give --apply (or --dry-run to see the plan)",
        ));
    }
    let server = Prometheus::new(url);
    let version = target.version.to_string();
    let queries = |reporter, window| {
        istio_queries(
            &service.name,
            &version,
            istio.namespace.as_deref(),
            &line.route,
            &args.prometheus_selector,
            reporter,
            window,
        )
    };
    let live = engine.live(service)?;
    let mut current = live.get(&line.route).cloned().unwrap_or_else(|| configured_weights(deployments));
    let name = format!("{} {}", service.name, target.version);
    if let (Some(_), Some(w)) = (&args.shadow, current.get(index).filter(|w| **w > 0)) {
        return Err(Fail::new(
            format!("{name} already takes {w}% of {}: a shadow step comes before real requests", line.route),
            format!(
                "roll the line back first (`meshver rollback {} --line {} --istio --apply …`), or leave out --shadow",
                service.name, line.major
            ),
        ));
    }
    let vs = format!(
        "the VirtualService {}{}",
        virtual_service_name(service),
        istio.namespace.as_deref().map_or(String::new(), |ns| format!(" in {ns}"))
    );
    if args.dry_run {
        println!("dry run: nothing is changed; each step patches {vs} (kubectl patch --type merge)");
        let mut weights = current.clone();
        for (n, step) in args.steps.percents.iter().enumerate() {
            weights = weights::shift(&weights, index, *step);
            let described = crate::commands::shift::describe(deployments, &weights);
            println!("step {}/{}: {} {described}", n + 1, args.steps.percents.len(), line.route);
        }
        let window = args.interval;
        if let Some(shadow) = &args.shadow {
            println!(
                "shadow: mirror {}% of {}'s {} to {name} first, judged by",
                shadow.percent,
                line.route,
                shadow.methods()
            );
            print_queries(&queries(Reporter::Destination, window));
        }
        println!("each step judged after {} from {url} by", humantime::format_duration(window));
        print_queries(&queries(Reporter::Source, window));
        return Ok(());
    }
    server.scalar("vector(1)").map_err(|e| {
        Fail::new(format!("cannot read Prometheus at {} ({e})", server.url), "check --prometheus and that it answers")
    })?;

    let interrupted = crate::commands::interrupt_flag()?;
    // Writes the line's weights (and a mirror) into the VirtualService; other lines keep theirs.
    let write = |weights: &[u32], mirror: Option<Mirror>| {
        let mut all = live.clone();
        all.insert(line.route.clone(), weights.to_vec());
        let routing = Routing { weights: all, mirror };
        let patch = merge_patch(service, &engine.catalog.catalog.route_header, istio.namespace.as_deref(), &routing);
        retry(&AtomicBool::new(false), || engine.kubectl.patch_virtual_service(virtual_service_name(service), &patch))
    };
    let lost = |e: &KubectlError, state: &str| {
        Fail::new(
            format!("{e} {state}; {vs} keeps what was last applied"),
            format!(
                "check it with kubectl, and roll back with `meshver rollback {} --line {} --istio --apply …`",
                service.name, line.major
            ),
        )
    };
    let all_on_stable = weights::all_on(deployments.len(), stable);
    let rolled_back = format!("rolled back {} to {}", service.name, stable_deployment.version);
    let interval_text = humantime::format_duration(args.interval).to_string();
    let limits = &args.limits;
    println!(
        "rolling out {name} on {}: steps {} every {interval_text}, max error rate {}{}, patching {vs}, judged from Istio's metrics in {url}",
        line.route,
        args.steps.text,
        percent(limits.max_error_rate),
        limits.max_p99_ms.map_or(String::new(), |p| format!(", max p99 {}", millis(p))),
    );
    // Waits an interval and measures it; None when interrupted. Too few requests wait up to
    // WAIT_INTERVALS more intervals, as the fleet's Prometheus judge does.
    let measure_step = |label: &str, reporter: Reporter| -> Outcome<Option<Measured>> {
        let start = Instant::now();
        measure_after(
            args.interval,
            label,
            &interrupted,
            || None,
            || {
                retry(&interrupted, || measure(&server, &queries(reporter, start.elapsed()))).map_err(|e| {
                    Fail::new(
                        format!("lost Prometheus at {} ({e}) at {label}: cannot judge it", server.url),
                        "roll out again once it answers",
                    )
                })
            },
            |measured: &Measured| measured.requests >= limits.min_requests as f64,
            |_| (),
        )
    };

    if let Some(shadow) = &args.shadow {
        let mirror = Mirror {
            line_route: line.route.clone(),
            to: target.route.clone(),
            percent: shadow.percent,
            all_methods: shadow.all_methods,
        };
        write(&current, Some(mirror)).map_err(|e| lost(&e, "before the shadow step"))?;
        let label =
            format!("shadow: {} mirrors {}% of {}'s {}", target.route, shadow.percent, line.route, shadow.methods());
        let measured = measure_step(&label, Reporter::Destination);
        write(&current, None).map_err(|e| lost(&e, "ending the shadow step (the mirror may still be on)"))?;
        let Some(measured) = measured? else {
            return Err(Fail::new(
                format!("interrupted in the shadow step of {name}"),
                "the mirror is off and no weight was changed",
            )
            .with_code(EXIT_INTERRUPTED));
        };
        if let Err(reason) = judge(&measured, limits, &interval_text) {
            println!("{label}: {reason}");
            return Err(Fail::new(
                format!("stopped the rollout of {name} in shadow: {reason} (mirrored); it was sent no user's request and the weights are unchanged"),
                format!("fix {name} and roll out again"),
            ));
        }
        println!(
            "{label}: ok, {} mirrored requests, {} errors",
            measured.requests,
            percent(Observed::from(&measured).error_rate())
        );
    }
    let total = args.steps.percents.len();
    for (n, step) in args.steps.percents.iter().enumerate() {
        let next = weights::shift(&current, index, *step);
        let label = format!("step {}/{total}: {} at {step}%", n + 1, target.route);
        write(&next, None).map_err(|e| lost(&e, &format!("setting {label}")))?;
        current = next;
        let Some(measured) = measure_step(&label, Reporter::Source)? else {
            write(&all_on_stable, None).map_err(|e| lost(&e, "rolling back after Ctrl-C"))?;
            return Err(Fail::new(format!("interrupted at {label}"), format!("{rolled_back} (all of {})", line.route))
                .with_code(EXIT_INTERRUPTED));
        };
        if let Err(reason) = judge(&measured, limits, &interval_text) {
            write(&all_on_stable, None).map_err(|e| lost(&e, &format!("rolling back at {label}")))?;
            println!("{label}: {reason}");
            return Err(Fail::new(format!("{rolled_back}: {reason}"), format!("fix {name} and roll out again")));
        }
        println!(
            "{label}: ok, {} requests, {} errors, p99 {}",
            measured.requests,
            percent(Observed::from(&measured).error_rate()),
            measured.p99_ms.map_or("-".to_owned(), millis)
        );
    }
    println!("{name} now takes {}% of {}", current.get(index).unwrap_or(&0), line.route);
    Ok(())
}

fn print_queries(queries: &crate::prometheus::StepQueries) {
    for (what, query) in [
        ("requests", &queries.requests),
        ("5xx", &queries.errors),
        ("p99", &queries.p99),
        ("line", &queries.line_requests),
    ] {
        println!("  {what}: {query}");
    }
}
