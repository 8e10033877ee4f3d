//! `meshver render istio`: the header filter's WasmPlugin for each deployment's workloads (its
//! own identity as the caller) and, with `--selector`, for other workloads; for a catalog with
//! `data`, the body filter's WasmPlugins beside them and an EnvoyFilter that raises the
//! listeners' buffer limit; an EnvoyFilter that makes the filter's labels Prometheus labels; and
//! per service a DestinationRule and a VirtualService.

mod image;

use super::buckets::bucket_regex;
use super::envoy::meshver_stats_tags;
use super::{buffer_limit, BODY_WASM_FILE, STICKY_HEADER};
use crate::catalog::{configured_weights, CatalogFile};
use crate::fail::{Fail, Outcome};
use crate::mesh::FailurePolicy;
use image::{module_source, ModuleSource};
use meshver::config::{Deployment, Service};
use meshver::filter::body::{BODY_HEADER, BODY_ROOT_ID};
use meshver::metrics::WASM_STAT_PREFIX;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the operator chooses about the Istio resources.
pub struct IstioOptions {
    pub namespace: Option<String>,
    /// Where Istio fetches the module: `oci://…` (or a reference without a scheme), `https://…`
    /// or `file://…`.
    pub image: String,
    /// What Istio checks the fetched module against (`sha256:<hex>`): an OCI image's digest,
    /// an https module's sha256 (see [`image`]).
    pub image_digest: Option<String>,
    /// Where Istio fetches the body filter module; by default `meshver_body.wasm` in place of
    /// an `image` that ends in `/meshver.wasm`.
    pub body_image: Option<String>,
    /// As `image_digest`, for the body filter module.
    pub body_image_digest: Option<String>,
    /// `key=value` labels of other workloads that run the filter without an identity of their
    /// own (a gateway, callers outside the catalog); none = only the catalog's workloads.
    pub selector: BTreeMap<String, String>,
    /// What the sidecar does once the filter's VM has failed.
    pub failure_policy: FailurePolicy,
}

/// The header filter's file name, which a default body module URL replaces.
const WASM_FILE: &str = "meshver.wasm";
/// Istio puts WasmPlugins of one phase into the chain by descending priority (and one without
/// a priority after every one with): the header filter must mark a request before the body
/// filter sees it.
const HEADER_PRIORITY: i32 = 20;
const BODY_PRIORITY: i32 = 10;
/// The EnvoyFilter that merges the filter's stats tags into the sidecars' bootstrap.
const STATS_FILTER: &str = "meshver-stats";
/// What the name of every metric family the filter defines starts with.
const FAMILY_PREFIX: &str = "meshver_";

/// All resources, in apply order.
pub fn render(file: &CatalogFile, options: &IstioOptions) -> Outcome<Vec<Value>> {
    let plugin_config: Value = serde_json::from_slice(&file.text)
        .map_err(|e| Fail::new(format!("{}: {e}", file.path.display()), "fix the catalog JSON"))?;
    let metadata = |name: &str| match &options.namespace {
        Some(ns) => json!({"name": name, "namespace": ns}),
        None => json!({"name": name}),
    };
    let plugin = |name: &str, plugin_name: &str, module: &ModuleSource, priority: i32, workload: &Workload| {
        let mut spec = json!({
            "url": module.url,
            "phase": "AUTHN",
            "priority": priority,
            "failStrategy": options.failure_policy.istio(),
            "pluginName": plugin_name,
            "type": "HTTP",
            // The route is chosen where the request leaves: at the gateway or the caller's
            // sidecar, so that is where the filter must run.
            "match": [{"mode": "CLIENT"}],
            "pluginConfig": workload.plugin_config(&plugin_config),
        });
        if !workload.labels.is_empty() {
            spec["selector"] = json!({"matchLabels": workload.labels});
        }
        if let Some(sha256) = &module.sha256 {
            spec["sha256"] = json!(sha256);
        }
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": metadata(name),
            "spec": spec,
        })
    };
    // EnvoyFilters apply to every proxy of the namespace: each deployment's pods run plugins as
    // well as the selected workloads, and an EnvoyFilter has one selector. They cost the others
    // nothing: a buffer limit is a ceiling, not memory taken; Envoy tries the stats tags only on
    // stats named `wasmcustom.…`.
    let envoy_filter = |name: &str, patches: Vec<Value>| {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": metadata(name),
            "spec": {"configPatches": patches},
        })
    };
    let header_module = module_source(&options.image, options.image_digest.as_deref(), "--image-digest")?;
    let body_module = buffer_limit(&file.catalog)
        .map(|_| module_source(&body_url(options)?, options.body_image_digest.as_deref(), "--body-image-digest"))
        .transpose()?;
    let mut resources = Vec::new();
    for workload in workloads(&file.catalog, &options.selector)? {
        let name = |plugin_name: &str| match &workload.caller {
            Some((_, _, label)) => format!("{plugin_name}-{label}"),
            None => plugin_name.to_owned(),
        };
        resources.push(plugin(&name("meshver"), "meshver", &header_module, HEADER_PRIORITY, &workload));
        if let Some(module) = &body_module {
            resources.push(plugin(&name(BODY_ROOT_ID), BODY_ROOT_ID, module, BODY_PRIORITY, &workload));
        }
    }
    if let Some(limit) = buffer_limit(&file.catalog) {
        resources.push(envoy_filter("meshver-body-buffer", buffer_limit_patches(limit)));
    }
    resources.push(envoy_filter(STATS_FILTER, vec![stats_tags_patch()]));
    for service in &file.catalog.services {
        let host = service_host(service, options.namespace.as_deref());
        let subsets = subset_names(service);
        resources.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": metadata(&service.name),
            "spec": {
                "host": host,
                "subsets": service.deployments.iter().zip(&subsets).map(|(d, name)| json!({
                    "name": name,
                    "labels": {"version": d.version.to_string()},
                })).collect::<Vec<_>>(),
            },
        }));
        resources.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": metadata(&service.name),
            "spec": {"hosts": [host], "http": http_routes(service, &file.catalog.route_header, options.namespace.as_deref(), &Routing::catalog())},
        }));
    }
    Ok(resources)
}

/// Workloads that run the filter, each with its own plugins: a deployment's pods (labels `app:
/// <service>`, `version: <semver>`, as Istio's conventions and the DestinationRule subsets have
/// them), whose sidecar states that deployment as the caller; and with `--selector`, other
/// workloads, with the catalog as it is.
struct Workload {
    labels: BTreeMap<String, String>,
    /// The deployment's service, version, and the plugins' name suffix.
    caller: Option<(String, String, String)>,
}

impl Workload {
    /// The catalog as this workload's plugins carry it: a deployment's with its `caller`.
    fn plugin_config(&self, catalog: &Value) -> Value {
        let mut config = catalog.clone();
        if let (Some((service, version, _)), Some(fields)) = (&self.caller, config.as_object_mut()) {
            fields.insert("caller".to_owned(), json!({"service": service, "version": version}));
        }
        config
    }
}

/// The selected workloads first, then every deployment's. A `--selector` that only names a
/// deployment's `app` and `version` labels would run the filter twice on its pods: refused.
fn workloads(catalog: &meshver::config::Catalog, selector: &BTreeMap<String, String>) -> Outcome<Vec<Workload>> {
    let mut workloads = Vec::new();
    if !selector.is_empty() {
        workloads.push(Workload { labels: selector.clone(), caller: None });
    }
    let mut names = BTreeMap::new();
    for service in &catalog.services {
        for deployment in &service.deployments {
            let version = deployment.version.to_string();
            let labels =
                BTreeMap::from([("app".to_owned(), service.name.clone()), ("version".to_owned(), version.clone())]);
            if !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value)) {
                return Err(Fail::new(
                    format!(
                        "--selector selects {} {version}'s workloads, which get plugins of their own",
                        service.name
                    ),
                    "select only workloads outside the catalog (a gateway: --selector istio=ingressgateway)",
                ));
            }
            let label = sanitize(&deployment.route);
            if let Some(other) = names.insert(label.clone(), deployment.route.clone()) {
                return Err(Fail::new(
                    format!("route keys {other:?} and {:?} would name the same WasmPlugins", deployment.route),
                    "give one of the deployments another route key",
                ));
            }
            workloads.push(Workload { labels, caller: Some((service.name.clone(), version, label)) });
        }
    }
    Ok(workloads)
}

/// The body filter module's URL: `--body-image`, or `meshver_body.wasm` beside `meshver.wasm`.
fn body_url(options: &IstioOptions) -> Outcome<String> {
    if let Some(url) = &options.body_image {
        return Ok(url.clone());
    }
    match options.image.strip_suffix(WASM_FILE) {
        Some(folder) if folder.ends_with('/') => Ok(format!("{folder}{BODY_WASM_FILE}")),
        _ => Err(Fail::new(
            format!(
                "the catalog has a data section, so the body filter ({BODY_WASM_FILE}) needs its own module, \
                 and --image {} does not end in /{WASM_FILE}",
                options.image
            ),
            format!("give --body-image with the URL of {BODY_WASM_FILE}"),
        )),
    }
}

/// The listeners' buffer limit, where the WasmPlugins run (a caller's outbound listeners and a
/// gateway's): Istio has no field of its own for it, so it is an EnvoyFilter merge. Envoy
/// buffers a body for a filter up to this limit and answers 413 by itself over it.
fn buffer_limit_patches(limit: usize) -> Vec<Value> {
    ["SIDECAR_OUTBOUND", "GATEWAY"]
        .iter()
        .map(|context| {
            json!({
                "applyTo": "LISTENER",
                "match": {"context": context},
                "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": limit}},
            })
        })
        .collect()
}

/// The tag specifiers `render envoy` writes, merged into the bootstrap of the namespace's proxies:
/// Istio's own stats tags stay, these are appended. Istio has no field for a tag with a regex of
/// one's own (its `extraStatTags` expect its own name encoding), so it is an EnvoyFilter, which
/// Istio applies to a bootstrap only when the proxy fetches it (see [`proxy_config`]).
fn stats_tags_patch() -> Value {
    json!({
        "applyTo": "BOOTSTRAP",
        "patch": {"operation": "MERGE", "value": {"stats_config": {"stats_tags": meshver_stats_tags()}}},
    })
}

/// The proxy settings (`proxy.istio.io/config`, a ProxyConfig) the workloads that run the filter
/// need for its metrics: their stats matcher keeps the filter's counters, and the agent fetches
/// the bootstrap from istiod, which is where Istio applies BOOTSTRAP patches. Both are read when
/// a proxy starts.
fn proxy_config() -> Value {
    json!({
        "proxyStatsMatcher": {"inclusionPrefixes": [format!("{WASM_STAT_PREFIX}{FAMILY_PREFIX}")]},
        "proxyMetadata": {"BOOTSTRAP_XDS_AGENT": "true"},
    })
}

/// What an operator must add beside the resources, as YAML comment lines before the stats
/// EnvoyFilter: the pod annotation with [`proxy_config`].
fn stats_filter_note() -> String {
    let annotation = super::yaml::document(&proxy_config());
    let mut note = format!(
        "# {STATS_FILTER} takes effect on a proxy that runs the filter once it starts with this pod\n\
         # annotation (or these keys under meshConfig.defaultConfig, for every proxy of the mesh):\n\
         #   proxy.istio.io/config: |\n"
    );
    for line in annotation.lines() {
        note.push_str(&format!("#     {line}\n"));
    }
    note
}

/// A subset name (DNS-1123 label) per deployment, in the service's order, all distinct.
pub fn subset_names(service: &Service) -> Vec<String> {
    let mut used = std::collections::BTreeSet::new();
    service
        .deployments
        .iter()
        .map(|d| {
            let base = sanitize(&d.route);
            let mut name = base.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{}-{n}", base.chars().take(60).collect::<String>());
                n += 1;
            }
            name
        })
        .collect()
}

/// A route key as a DNS-1123 label: lower case, `[a-z0-9-]`, at most 63, ends alphanumeric.
pub fn sanitize(key: &str) -> String {
    let mapped: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "deployment".to_owned()
    } else {
        trimmed
    }
}

/// The host a service's DestinationRule and VirtualService name: `<service>`, or its cluster-wide
/// name in `namespace`.
pub fn service_host(service: &Service, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{}.{ns}.svc.cluster.local", service.name),
        None => service.name.clone(),
    }
}

/// What a VirtualService's routes carry besides the catalog: the live weights `shift` and
/// `rollout` set, and the mirror of a shadow step.
#[derive(Debug, Default, Clone)]
pub struct Routing {
    /// Weights by line route, oldest deployment first; a line not named has the catalog's.
    pub weights: BTreeMap<String, Vec<u32>>,
    pub mirror: Option<Mirror>,
}

impl Routing {
    /// The catalog's weights, nothing mirrored (what `render istio` writes).
    pub fn catalog() -> Routing {
        Routing::default()
    }
}

/// A shadow step: a share of one line's requests copied to one of its deployments.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub line_route: String,
    /// The route key of the deployment the copies go to.
    pub to: String,
    pub percent: u32,
    /// Every method, not only GET, HEAD and OPTIONS.
    pub all_methods: bool,
}

/// The VirtualService's `http` routes of a service: pinned routes, then per line its sticky
/// routes and its weighted route. With a mirror, each route of its line copies the share to the
/// candidate's subset; for safe methods only, each gets a copy matching them (with the mirror)
/// placed before it.
pub fn http_routes(service: &Service, route_header: &str, namespace: Option<&str>, routing: &Routing) -> Vec<Value> {
    let host = service_host(service, namespace);
    let subsets = subset_names(service);
    let mut routes = Vec::new();
    for (line_route, route) in unmirrored_routes(service, &subsets, &host, route_header, routing) {
        let mirror = routing.mirror.as_ref().filter(|m| Some(&m.line_route) == line_route.as_ref());
        let Some(mirror) = mirror else {
            routes.push(route);
            continue;
        };
        let subset = service.deployments.iter().position(|d| d.route == mirror.to).and_then(|i| subsets.get(i));
        let mirrored = |mut route: Value| {
            route["mirror"] = json!({"host": host, "subset": subset});
            route["mirrorPercentage"] = json!({"value": f64::from(mirror.percent)});
            route
        };
        if mirror.all_methods {
            routes.push(mirrored(route));
            continue;
        }
        let mut safe = mirrored(route.clone());
        if let Some(name) = route["name"].as_str() {
            safe["name"] = json!(format!("{name}-safe-methods"));
        }
        for condition in safe["match"].as_array_mut().into_iter().flatten() {
            condition["method"] = json!({"regex": SAFE_METHODS_REGEX});
        }
        routes.push(safe);
        routes.push(route);
    }
    routes
}

/// The methods a shadow step mirrors unless told otherwise (as `render envoy`'s mirror routes).
const SAFE_METHODS_REGEX: &str = "^(GET|HEAD|OPTIONS)$";

/// Each route with the line route it belongs to (none for a pinned one).
fn unmirrored_routes(
    service: &Service,
    subsets: &[String],
    host: &str,
    route_header: &str,
    routing: &Routing,
) -> Vec<(Option<String>, Value)> {
    let subset_of = |route: &str| {
        service
            .deployments
            .iter()
            .position(|d| d.route == route)
            .and_then(|i| subsets.get(i))
            .cloned()
            .unwrap_or_default()
    };
    // A deprecated deployment's answers carry its lifecycle headers, whichever route sent there.
    let destination = |d: &Deployment| {
        let mut to = json!({"destination": {"host": host, "subset": subset_of(&d.route)}});
        let headers = &d.lifecycle.response_headers;
        if !headers.is_empty() {
            let set: serde_json::Map<String, Value> = headers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
            to["headers"] = json!({"response": {"set": set}});
        }
        to
    };
    // The filter's headers are for routing only: upstreams never see them.
    let strip = json!({"request": {"remove": [route_header, STICKY_HEADER, BODY_HEADER]}});
    let mut routes = Vec::new();
    for d in &service.deployments {
        routes.push((
            None,
            json!({
                "name": sanitize(&d.route),
                "match": [{"headers": {route_header: {"exact": d.route}}}],
                "route": [destination(d)],
                "headers": strip,
            }),
        ));
    }
    for line in &service.lines {
        let deployments = service.line_deployments(line);
        let weights = routing.weights.get(&line.route).cloned().unwrap_or_else(|| configured_weights(deployments));
        // Newest first, like Envoy's weighted_clusters: buckets [0, w_newest) go to the newest.
        let newest_first: Vec<_> = deployments.iter().zip(&weights).rev().collect();
        if deployments.len() > 1 {
            let mut lo = 0;
            for (d, w) in &newest_first {
                let hi = lo + **w;
                if let Some(regex) = bucket_regex(lo, hi) {
                    routes.push((
                        Some(line.route.clone()),
                        json!({
                            "name": format!("{}-sticky-{}", sanitize(&line.route), sanitize(&d.route)),
                            "match": [{"headers": {
                                route_header: {"exact": line.route},
                                STICKY_HEADER: {"regex": regex},
                            }}],
                            "route": [destination(d)],
                            "headers": strip,
                        }),
                    ));
                }
                lo = hi;
            }
        }
        routes.push((
            Some(line.route.clone()),
            json!({
                "name": sanitize(&line.route),
                "match": [{"headers": {route_header: {"exact": line.route}}}],
                "route": newest_first.iter().map(|(d, w)| {
                    let mut to = destination(d);
                    to["weight"] = json!(w);
                    to
                }).collect::<Vec<_>>(),
                "headers": strip,
            }),
        ));
    }
    routes
}

/// Multi-document YAML, `---` between documents; the stats EnvoyFilter comes with its note.
pub fn to_yaml(resources: &[Value]) -> String {
    resources
        .iter()
        .map(|resource| {
            let document = super::yaml::document(resource);
            let stats_filter = resource["kind"] == "EnvoyFilter" && resource["metadata"]["name"] == STATS_FILTER;
            if stats_filter {
                stats_filter_note() + &document
            } else {
                document
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::{body_url, proxy_config, sanitize, workloads, IstioOptions};
    use meshver::metrics::{Family, WASM_STAT_PREFIX};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn options(image: &str, body_image: Option<&str>) -> IstioOptions {
        IstioOptions {
            namespace: None,
            image: image.to_owned(),
            image_digest: None,
            body_image: body_image.map(str::to_owned),
            body_image_digest: None,
            selector: Default::default(),
            failure_policy: Default::default(),
        }
    }

    #[test]
    fn the_body_module_sits_beside_the_header_module_unless_named() {
        let url = |image, body| body_url(&options(image, body)).map_err(|f| f.lines.join(" "));
        assert_eq!(
            url("file:///etc/istio/extensions/meshver.wasm", None).unwrap(),
            "file:///etc/istio/extensions/meshver_body.wasm"
        );
        assert_eq!(url("https://example.com/w/meshver.wasm", None).unwrap(), "https://example.com/w/meshver_body.wasm");
        assert_eq!(
            url("oci://r.example.com/meshver:1", Some("oci://r.example.com/meshver-body:1")).unwrap(),
            "oci://r.example.com/meshver-body:1"
        );
        // An OCI image (or a file of another name) says nothing about where the body module is.
        let refused = url("oci://r.example.com/meshver:1", None).unwrap_err();
        assert!(refused.contains("--body-image"), "{refused}");
        assert!(url("file:///x/not-meshver.wasm", None).is_err());
    }

    #[test]
    fn each_deployment_is_a_workload_that_states_its_identity() {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"user","match":{"path_prefixes":["/"]},"default_version":"1",
            "deployments":[{"version":"1.4.0"},{"version":"2.1.0","route":"user-new"}]}]}"#,
        )
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let gateway = labels(&[("istio", "ingressgateway")]);
        let found = workloads(&catalog, &gateway).unwrap();
        let seen: Vec<_> = found.iter().map(|w| (w.labels.clone(), w.caller.clone())).collect();
        let caller = |v: &str, name: &str| Some(("user".to_owned(), v.to_owned(), name.to_owned()));
        assert_eq!(
            seen,
            [
                (gateway, None),
                (labels(&[("app", "user"), ("version", "1.4.0")]), caller("1.4.0", "user-1-4-0")),
                (labels(&[("app", "user"), ("version", "2.1.0")]), caller("2.1.0", "user-new")),
            ]
        );
        let config = found[2].plugin_config(&json!({"services": []}));
        assert_eq!(config, json!({"services": [], "caller": {"service": "user", "version": "2.1.0"}}));
        assert_eq!(found[0].plugin_config(&json!({"services": []})), json!({"services": []}));
        assert_eq!(workloads(&catalog, &BTreeMap::new()).unwrap().len(), 2);
        // A selector that only names a deployment's own labels would run the filter twice there.
        for overlapping in [&[("app", "user")][..], &[("app", "user"), ("version", "2.1.0")], &[("version", "1.4.0")]] {
            let refused = workloads(&catalog, &labels(overlapping)).map(|_| ()).unwrap_err().lines.join(" ");
            assert!(refused.contains("plugins of their own"), "{refused}");
        }
        assert!(workloads(&catalog, &labels(&[("app", "user"), ("tier", "edge")])).is_ok());
    }

    #[test]
    fn subset_names_are_dns_labels() {
        assert_eq!(sanitize("user-2.1.0"), "user-2-1-0");
        assert_eq!(sanitize("User_2.1.0-rc.1"), "user-2-1-0-rc-1");
        assert_eq!(sanitize("..."), "deployment");
        assert_eq!(sanitize(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn the_stats_matcher_keeps_every_family() {
        let prefix = proxy_config()["proxyStatsMatcher"]["inclusionPrefixes"][0].as_str().unwrap().to_owned();
        for family in Family::ALL {
            assert!(format!("{WASM_STAT_PREFIX}{}", family.name()).starts_with(&prefix), "{}", family.name());
        }
    }
}
