//! `meshver render envoy`: a complete Envoy v3 bootstrap from a mesh file.

use super::{buffer_limit, compact_json, BODY_WASM_FILE, STICKY_HEADER};
use crate::catalog::{configured_weights, load_file_with, runtime_prefix, stable_index};
use crate::fail::{Fail, Outcome};
use crate::mesh::{socket_address, FailurePolicy, ForwardTls, ListenerTls, MeshFile};
use meshver::caller::{CALLER_HEADER, REQUIRES_HEADER};
use meshver::config::{Deployment, Line, Service};
use meshver::filter::body::{BODY_HEADER, BODY_ROOT_ID};
use meshver::metrics;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where rendered configs point Envoy at the wasm module.
pub enum WasmPath {
    /// Absolute (the default).
    Absolute,
    /// Relative to this folder, for configs shipped in a repository and run from its root.
    RelativeTo(PathBuf),
}

/// Which host runs the header filter (`render envoy --host`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterHost {
    /// The wasm module in Envoy's V8 (any Envoy with wasm, and Istio).
    #[default]
    Wasm,
    /// The native dynamic module `libmeshver.so`, found on Envoy's
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`; built for one Envoy minor release (1.40). It is the
    /// body filter too.
    Native,
}

/// The name of the native module: Envoy loads `lib<name>.so`.
pub const NATIVE_MODULE: &str = "meshver";

/// Renders the bootstrap of a mesh file, with the wasm header filter.
pub fn render(mesh_path: &Path, wasm_path: &WasmPath) -> Outcome<Value> {
    render_on(mesh_path, wasm_path, FilterHost::Wasm)
}

/// Renders the bootstrap of a mesh file, with the header filter on `host`.
pub fn render_on(mesh_path: &Path, wasm_path: &WasmPath, filter_host: FilterHost) -> Outcome<Value> {
    let file = MeshFile::load(mesh_path)?;
    let mesh = &file.mesh;
    let wasm = file.resolve(&mesh.wasm);
    let body_wasm = match &mesh.body_wasm {
        Some(path) => file.resolve(path),
        None => wasm.with_file_name(BODY_WASM_FILE),
    };
    let (wasm, body_wasm) = (module_path(wasm, wasm_path)?, module_path(body_wasm, wasm_path)?);
    if mesh.listeners.is_empty() {
        return Err(Fail::new(format!("{}: no listeners", mesh_path.display()), "add at least one listener"));
    }

    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut cluster_names = BTreeSet::new();
    let mut listener_names = BTreeSet::new();
    for listener in &mesh.listeners {
        if !listener_names.insert(listener.name.as_str()) {
            return Err(Fail::new(format!("listener {:?} is listed twice", listener.name), "give each a unique name"));
        }
        let catalog = load_file_with(&file.resolve(&listener.catalog), &listener.overlay())?;
        let (host, port) = socket_address(&listener.address, &format!("address of listener {:?}", listener.name))?;
        if listener.forward_tls.is_some() && listener.forward_to.is_none() {
            return Err(Fail::new(
                format!("listener {:?} has forward_tls but no forward_to", listener.name),
                "give forward_to, or drop forward_tls",
            ));
        }
        let strip: Vec<&str> = match listener.forward_to {
            Some(_) => vec![],
            None => vec![catalog.catalog.route_header.as_str(), STICKY_HEADER, BODY_HEADER],
        };
        let routes = match &listener.forward_to {
            Some(target) => {
                let name = format!("{}-forward", listener.name);
                let (to_host, to_port) =
                    socket_address(target, &format!("forward_to of listener {:?}", listener.name))?;
                add_cluster(&mut clusters, &mut cluster_names, &name, &to_host, to_port)?;
                if let (Some(tls), Some(cluster)) = (&listener.forward_tls, clusters.last_mut()) {
                    cluster["transport_socket"] = upstream_tls(&file, tls);
                }
                vec![json!({"match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "5s"}})]
            }
            None => {
                for service in &catalog.catalog.services {
                    for deployment in &service.deployments {
                        if cluster_names.contains(&deployment.route) {
                            continue;
                        }
                        let endpoint = mesh.endpoints.get(&deployment.route).ok_or_else(|| {
                            Fail::new(
                                format!(
                                    "no endpoint for route key {:?} (listener {:?})",
                                    deployment.route, listener.name
                                ),
                                format!(
                                    "add \"{}\": \"host:port\" to \"endpoints\" in {}",
                                    deployment.route,
                                    mesh_path.display()
                                ),
                            )
                        })?;
                        let (h, p) = socket_address(endpoint, &format!("endpoint {:?}", deployment.route))?;
                        add_cluster(&mut clusters, &mut cluster_names, &deployment.route, &h, p)?;
                        if mesh.shadow && shadow_candidates(service).any(|(_, d)| d.route == deployment.route) {
                            add_cluster(&mut clusters, &mut cluster_names, &shadow_cluster(deployment), &h, p)?;
                        }
                    }
                }
                routes(&catalog.catalog, mesh.shadow)
            }
        };
        let listener_limit = buffer_limit(&catalog.catalog);
        let access_log = access_log(&listener.name, &catalog.catalog, listener.forward_to.is_some());
        let hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": listener.name,
            // HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
            "codec_type": "AUTO",
            "early_header_mutation_extensions": [client_headers_removed(&catalog.catalog)],
            "route_config": {"name": listener.name, "virtual_hosts": [{
                "name": listener.name,
                "domains": ["*"],
                // The filter's headers are for the mesh's routing only: upstreams never see them.
                "request_headers_to_remove": strip,
                "routes": routes,
            }]},
            "http_filters": http_filters(&listener.name, (filter_host, &wasm), listener_limit.map(|_| body_wasm.as_path()), &catalog.text, mesh.failure_policy),
            "access_log": [access_log],
        });
        let mut rendered = json!({
            "name": listener.name,
            "address": address(&host, port),
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
        });
        if let Some(limit) = listener_limit {
            rendered["per_connection_buffer_limit_bytes"] = json!(limit);
        }
        if let Some(tls) = &listener.tls {
            rendered["filter_chains"][0]["transport_socket"] = downstream_tls(&file, tls);
        }
        listeners.push(rendered);
    }
    let (admin_host, admin_port) = socket_address(&mesh.admin, "admin")?;
    Ok(json!({
        "admin": {"address": address(&admin_host, admin_port)},
        // Histograms reach the admin's /stats at each flush; 1s keeps rollout judgments current.
        "stats_flush_interval": "1s",
        // The filter's labels, encoded in its counters' names, become Prometheus labels; each
        // deployment's cluster is named whole.
        "stats_config": {"stats_tags": stats_tags(&cluster_names)},
        "layered_runtime": runtime_layers(&file, filter_host)?,
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }))
}

/// The runtime: a static layer; with the mesh file's `weights`, the fleet's runtime folder (a
/// disk layer named `fleet` on its `current` symlink, created here with an empty first version
/// if missing); and the admin layer, last, which is what lets `POST /runtime_modify` act on one
/// Envoy. The admin layer is above the folder: a value set there hides the folder's until it is
/// removed, which `shift`, `rollback` and `rollout` do on the admins they are given.
fn runtime_layers(file: &MeshFile, filter_host: FilterHost) -> Outcome<Value> {
    let mut layers = vec![json!({"name": "static", "static_layer": static_runtime(filter_host)})];
    if let Some(weights) = &file.mesh.weights {
        let folder = crate::fleet::runtime_dir::RuntimeDir::create(&file.resolve(&weights.runtime_dir))?;
        layers.push(json!({"name": crate::fleet::converge::FLEET_LAYER, "disk_layer": {
            "symlink_root": folder.current().display().to_string(),
        }}));
    }
    layers.push(json!({"name": "admin", "admin_layer": {}}));
    Ok(json!({"layers": layers}))
}

/// The runtime's static layer. For the native host: Envoy 1.40 shows a dynamic module's
/// counters in `/stats/prometheus` as `envoy_dynamicmodulescustom_<name>` unless this flag is
/// set; with it, as the wasm host's are shown, `meshver_requests_total{…}`.
fn static_runtime(filter_host: FilterHost) -> Value {
    match filter_host {
        FilterHost::Wasm => json!({}),
        FilterHost::Native => json!({"envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true}),
    }
}

/// Envoy tag specifiers (`stats_config.stats_tags`) that turn the labels the filter encodes in its
/// counters' names into Prometheus labels. `render istio` merges the same ones into a sidecar's
/// bootstrap.
pub fn meshver_stats_tags() -> Vec<Value> {
    metrics::stats_tags().into_iter().map(|(tag, regex)| json!({"tag_name": tag, "regex": regex})).collect()
}

/// The bootstrap's tag specifiers: the filter's labels, and the name of every cluster that holds a
/// dot. Envoy's default `envoy.cluster_name` tag ends a cluster's name at its first dot, and a
/// deployment's cluster is named by its route key: Prometheus would read `user-2.1.0`'s requests
/// as `envoy_cluster_1_0_upstream_rq{envoy_cluster_name="user-2"}`. The tag below names those
/// clusters whole. Its regex starts with no fixed token, so Envoy tries it before its default
/// tags, and skips the default `envoy.cluster_name` once this one has matched.
fn stats_tags(cluster_names: &BTreeSet<String>) -> Vec<Value> {
    let mut tags = meshver_stats_tags();
    let mut dotted: Vec<&str> = cluster_names.iter().map(String::as_str).filter(|n| n.contains('.')).collect();
    if !dotted.is_empty() {
        // Longest first: `user-2.1` must not take the `user-2.1.0` of `cluster.user-2.1.0.…`.
        dotted.sort_by_key(|name| std::cmp::Reverse(name.len()));
        let names: Vec<String> = dotted.iter().map(|name| regex_literal(name)).collect();
        tags.push(json!({
            "tag_name": "envoy.cluster_name",
            "regex": format!(r"^(?:cluster)\.(({})\.)", names.join("|")),
        }));
    }
    tags
}

/// `text` as a regex that matches it literally.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if r"\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn address(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

fn add_cluster(clusters: &mut Vec<Value>, names: &mut BTreeSet<String>, name: &str, host: &str, port: u16) -> Outcome {
    if !names.insert(name.to_owned()) {
        return Err(Fail::new(format!("two clusters would be named {name:?}"), "rename a listener or a route key"));
    }
    clusters.push(json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(host, port)}}]}]},
    }));
    Ok(())
}

/// A listener's TLS: its certificate, ALPN for HTTP/2 and HTTP/1.1, and unless told otherwise
/// a required client certificate of the CA, whose first URI SAN (a SPIFFE ID) the filter reads
/// as the connection's peer.
fn downstream_tls(file: &MeshFile, tls: &ListenerTls) -> Value {
    let mut context = tls_context(file, &tls.cert, &tls.key, &tls.ca);
    context["alpn_protocols"] = json!(["h2", "http/1.1"]);
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": tls.require_client_certificate,
        "common_tls_context": context,
    }})
}

/// A sidecar's hop to `forward_to` over mTLS: its own certificate (its identity there), and the
/// listener's certificate checked against the CA and, if given, its SPIFFE ID.
fn upstream_tls(file: &MeshFile, tls: &ForwardTls) -> Value {
    let mut context = tls_context(file, &tls.cert, &tls.key, &tls.ca);
    if let Some(id) = &tls.server_spiffe_id {
        context["validation_context"]["match_typed_subject_alt_names"] =
            json!([{"san_type": "URI", "matcher": {"exact": id}}]);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": context,
    }})
}

/// A certificate and key, and the CA the other side's certificate must chain to; paths as the
/// mesh file resolves them.
fn tls_context(file: &MeshFile, cert: &Path, key: &Path, ca: &Path) -> Value {
    let path = |p: &Path| json!({"filename": file.resolve(p).display().to_string()});
    json!({
        "tls_certificates": [{"certificate_chain": path(cert), "private_key": path(key)}],
        "validation_context": {"trusted_ca": path(ca)},
    })
}

/// A module's path as the rendered config names it.
fn module_path(path: PathBuf, wasm_path: &WasmPath) -> Outcome<PathBuf> {
    match wasm_path {
        WasmPath::Absolute => Ok(path),
        WasmPath::RelativeTo(dir) => {
            let base = crate::mesh::absolute(dir)?;
            path.strip_prefix(&base).map(Path::to_path_buf).map_err(|_| {
                Fail::new(
                    format!("the wasm module {} is not under {}", path.display(), base.display()),
                    "give a folder that holds it, or drop --wasm-relative-to",
                )
            })
        }
    }
}

/// meshver's own request headers as a client might send them, removed by Envoy as the request
/// arrives, before any filter and before routing: whatever becomes of the filter (its VM failed
/// under the `open` failure policy leaves it out of the chain), no route, weighted cluster or
/// body filter ever acts on a client's route key, sticky number or body mark. The filter removes
/// them too; this is what holds when it does not run. A listener that trusts callers' identity
/// headers (a callee's inbound, reached by sidecars) keeps those, and only those.
fn client_headers_removed(catalog: &meshver::config::Catalog) -> Value {
    let mut names = vec![catalog.route_header.as_str(), STICKY_HEADER, BODY_HEADER];
    if !catalog.trust_caller_headers {
        names.extend([CALLER_HEADER, REQUIRES_HEADER]);
    }
    let mutations: Vec<Value> = names.into_iter().map(|name| json!({"remove": name})).collect();
    json!({"name": "envoy.http.early_header_mutation.header_mutation", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
        "mutations": mutations,
    }})
}

/// The header filter; with `body_wasm` (a catalog with a `data` section), the body filter
/// behind its mark ([`marked_only`]); then the router.
fn http_filters(
    listener: &str,
    (host, wasm): (FilterHost, &Path),
    body_wasm: Option<&Path>,
    catalog: &[u8],
    failure: FailurePolicy,
) -> Value {
    let header_filter = match host {
        FilterHost::Wasm => wasm_filter(listener, "meshver", wasm, catalog, failure),
        FilterHost::Native => native_filter("meshver", catalog),
    };
    let mut filters = vec![header_filter];
    if let Some(body_wasm) = body_wasm {
        filters.push(marked_only(match host {
            FilterHost::Wasm => wasm_filter(listener, BODY_ROOT_ID, body_wasm, catalog, failure),
            FilterHost::Native => native_filter(BODY_ROOT_ID, catalog),
        }));
    }
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    Value::Array(filters)
}

/// The body filter inside Envoy's `composite` filter, which creates it only for a request the
/// header filter marked with `x-meshver-body`: any other request never enters its VM. (Inside
/// `match_delegate` with a skip action, Envoy still created and deleted the filter's VM context
/// for each request, for the access log every wasm filter registers.)
fn marked_only(body_filter: Value) -> Value {
    json!({
        "name": BODY_ROOT_ID,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "envoy.filters.http.composite", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}},
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": {"single_predicate": {
                    "input": {"name": "body-mark", "typed_config": {
                        "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                        "header_name": BODY_HEADER}},
                    // Every mark holds a space (`<service> <plan> <version>`).
                    "value_match": {"contains": " "},
                }},
                "on_match": {"action": {"name": BODY_ROOT_ID, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction",
                    "typed_config": body_filter}}},
            }]}},
        },
    })
}

/// A filter as Envoy's dynamic module filter: the same catalog JSON, no VM (and so no failure
/// policy: the module has no VM to fail; a panic is answered 500 where it happens). The module
/// is the body filter under the wasm body filter's root id, otherwise the header filter.
fn native_filter(filter_name: &str, catalog: &[u8]) -> Value {
    json!({
        "name": filter_name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            // do_not_close: Envoy never unloads the library (a Rust library's thread-local
            // destructors must outlive every worker thread).
            "dynamic_module_config": {"name": NATIVE_MODULE, "do_not_close": true},
            "filter_name": filter_name,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": compact_json(catalog),
            },
        },
    })
}

fn wasm_filter(listener: &str, root_id: &str, wasm: &Path, catalog: &[u8], failure: FailurePolicy) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": root_id,
                "root_id": root_id,
                "vm_config": {
                    "vm_id": format!("{root_id}-{listener}"),
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": compact_json(catalog),
                },
                // Always written: left out, the policy would be whatever this Envoy defaults to.
                "failure_policy": failure.envoy(),
            },
        },
    })
}

/// Pinned routes, then one weighted route per line (newest first, sticky header), then a 404.
/// A deprecated deployment's answers get its lifecycle headers from its route or its weighted
/// cluster: Envoy adds them to whatever that deployment answers, whoever picked it. Each route
/// is named by its route key and carries its service as metadata, for the access log.
fn routes(catalog: &meshver::config::Catalog, shadow: bool) -> Vec<Value> {
    let header = &catalog.route_header;
    let on_key = |key: &str, service: &str| {
        json!({
            "name": key,
            "match": {"prefix": "/", "headers": [{"name": header, "string_match": {"exact": key}}]},
            "metadata": {"filter_metadata": {ROUTE_METADATA: {"service": service}}},
        })
    };
    let mut routes = Vec::new();
    for service in &catalog.services {
        for deployment in &service.deployments {
            let mut route = on_key(&deployment.route, &service.name);
            route["route"] = json!({"cluster": deployment.route, "timeout": "5s"});
            announce_lifecycle(&mut route, deployment);
            routes.push(route);
        }
    }
    for service in &catalog.services {
        for line in &service.lines {
            let deployments = service.line_deployments(line);
            let weights = configured_weights(deployments);
            // Newest first: with sticky numbers, a client below the new weight stays on the
            // new version as that weight grows, so clients only ever move from old to new.
            let clusters: Vec<Value> = deployments
                .iter()
                .zip(weights)
                .rev()
                .map(|(d, w)| {
                    let mut cluster = json!({"name": d.route, "weight": w});
                    announce_lifecycle(&mut cluster, d);
                    cluster
                })
                .collect();
            let mut route = on_key(&line.route, &service.name);
            route["route"] = json!({
                "weighted_clusters": {
                    "runtime_key_prefix": runtime_prefix(line),
                    "header_name": STICKY_HEADER,
                    "clusters": clusters,
                },
                "timeout": "5s",
            });
            let shadowed: Vec<&Deployment> = if shadow {
                shadow_candidates(service).filter(|(l, _)| l.route == line.route).map(|(_, d)| d).collect()
            } else {
                Vec::new()
            };
            if !shadowed.is_empty() {
                // Read-only requests first, on a route of their own: only those are mirrored
                // unless a rollout asks for every method (the other route's keys).
                let mut safe = route.clone();
                if let Some(headers) = safe["match"]["headers"].as_array_mut() {
                    headers.push(
                        json!({"name": ":method", "string_match": {"safe_regex": {"regex": SAFE_METHODS_REGEX}}}),
                    );
                }
                safe["route"]["request_mirror_policies"] = mirror_policies(line, &shadowed, MirroredMethods::Safe);
                route["route"]["request_mirror_policies"] = mirror_policies(line, &shadowed, MirroredMethods::Unsafe);
                routes.push(safe);
            }
            routes.push(route);
        }
    }
    routes.push(json!({
        "name": metrics::NONE,
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string":
            r#"{"title":"no service matched","status":404,"detail":"no meshver service matches this request's path or host"}"#}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
    }));
    routes
}

/// The methods a shadow step mirrors by default: the safe (read-only) ones. A mirrored POST,
/// PUT, PATCH or DELETE would be done twice, once by the stable deployment and once by the
/// candidate, against whatever state they share.
const SAFE_METHODS_REGEX: &str = "^(GET|HEAD|OPTIONS)$";

/// Which of a line's requests a mirror policy copies: the safe methods (on a route of their own),
/// or the unsafe ones (on the line's own route, which every other request reaches).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MirroredMethods {
    Safe,
    Unsafe,
}

impl MirroredMethods {
    /// The runtime key prefix of the share mirrored: `shadow` for safe methods, `shadow_unsafe`
    /// for the others.
    fn runtime_root(self) -> &'static str {
        match self {
            MirroredMethods::Safe => "shadow",
            MirroredMethods::Unsafe => "shadow_unsafe",
        }
    }
}

/// The deployments a shadow step can mirror to, with their lines: every deployment of a line of
/// several but its stable one (the one a rollout starts from).
pub fn shadow_candidates(service: &Service) -> impl Iterator<Item = (&Line, &Deployment)> {
    service.lines.iter().filter(|line| line.size > 1).flat_map(move |line| {
        let deployments = service.line_deployments(line);
        let stable = stable_index(deployments);
        deployments.iter().enumerate().filter(move |(i, _)| *i != stable).map(move |(_, d)| (line, d))
    })
}

/// The cluster mirrored requests go to: the deployment's endpoints under a name of its own, so that
/// Envoy counts the shadow's requests, 5xx and latency apart from any real request (a request
/// pinned to a version only the candidate serves reaches its own cluster whatever the weights).
pub fn shadow_cluster(deployment: &Deployment) -> String {
    format!("{}-shadow", deployment.route)
}

/// The runtime key of the share (0–100) of a line's requests mirrored to a deployment:
/// `shadow.user-v2.user-2.1.0` (GET, HEAD, OPTIONS), `shadow_unsafe.user-v2.user-2.1.0` (the others).
pub fn shadow_key(line: &Line, deployment: &Deployment, methods: MirroredMethods) -> String {
    format!("{}.{}.{}", methods.runtime_root(), line.route, deployment.route)
}

/// One mirror policy per shadow candidate, each off (0%) until its runtime key says otherwise.
fn mirror_policies(line: &Line, deployments: &[&Deployment], methods: MirroredMethods) -> Value {
    let policies: Vec<Value> = deployments
        .iter()
        .map(|d| {
            json!({
                "cluster": shadow_cluster(d),
                "runtime_fraction": {
                    "default_value": {"numerator": 0, "denominator": "HUNDRED"},
                    "runtime_key": shadow_key(line, d, methods),
                },
            })
        })
        .collect();
    Value::Array(policies)
}

/// The metadata namespace of the rendered routes (`%METADATA(ROUTE:meshver:service)%`).
const ROUTE_METADATA: &str = "meshver";

/// The listener's access log, on Envoy's standard output: each request's decision, read from
/// what the filter leaves behind, so that logging it costs the filter no host call. The route
/// key is the name of the route the request took (the route header itself is removed before
/// the upstream), or on a sidecar the route header it passes on; the service is that route's
/// metadata; the version is the version header the filter normalised; the outcome is Envoy's
/// response code details: `via_upstream`, or for the filter's own answers
/// `meshver_<kind>{<service>[,<version>]}`.
fn access_log(listener: &str, catalog: &meshver::config::Catalog, sidecar: bool) -> Value {
    let route = if sidecar { format!("%REQ({})%", catalog.route_header) } else { "%ROUTE_NAME%".to_owned() };
    let headers: BTreeSet<&str> = catalog.services.iter().map(|s| s.version_header.as_str()).collect();
    let version: Vec<String> = headers.iter().map(|h| format!("%REQ({h})%")).collect();
    let format = format!(
        "[%START_TIME%] {listener} \"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%\" %RESPONSE_CODE% \
         service=%METADATA(ROUTE:{ROUTE_METADATA}:service)% version={} route={route} \
         outcome=%RESPONSE_CODE_DETAILS% upstream=%UPSTREAM_CLUSTER% %DURATION%ms\n",
        version.join("/")
    );
    json!({"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {"inline_string": format}},
    }})
}

/// Adds the deployment's `Deprecation`, `Sunset` and `Link` (as the catalog made them) to the
/// answers of a route or weighted cluster, replacing any the upstream sent.
fn announce_lifecycle(target: &mut Value, deployment: &Deployment) {
    let headers = &deployment.lifecycle.response_headers;
    if let (false, Some(target)) = (headers.is_empty(), target.as_object_mut()) {
        let add: Vec<Value> = headers
            .iter()
            .map(|(name, value)| {
                json!({"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
            })
            .collect();
        target.insert("response_headers_to_add".to_owned(), Value::Array(add));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lifecycle headers on the route or weighted cluster of the route key `key`.
    fn announced(routes: &[Value], key: &str) -> Vec<(String, String)> {
        let pairs = |list: &Value| -> Vec<(String, String)> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|h| (h["header"]["key"].as_str().unwrap().into(), h["header"]["value"].as_str().unwrap().into()))
                .collect()
        };
        for route in routes {
            if route["route"]["cluster"] == key {
                return pairs(&route["response_headers_to_add"]);
            }
            for cluster in route["route"]["weighted_clusters"]["clusters"].as_array().into_iter().flatten() {
                if cluster["name"] == key {
                    return pairs(&cluster["response_headers_to_add"]);
                }
            }
        }
        panic!("no route to {key}")
    }

    #[test]
    fn answers_carry_the_lifecycle_of_the_deployment_that_served() {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"user","match":{"path_prefixes":["/login"]},"default_version":"1",
            "lines":{"1":{"lifecycle":{"deprecated":"2026-01-01","sunset":"2030-01-01","successor":"2","link":"https://docs.example.com/user/v2"}}},
            "deployments":[{"version":"1.4.0"},{"version":"2.0.3"},{"version":"2.1.0"}]}]}"#,
        )
        .unwrap();
        let routes = routes(&catalog, false);
        let v1 = announced(&routes, "user-1.4.0");
        let names: Vec<&str> = v1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["deprecation", "sunset", "link"]);
        assert_eq!(v1[0].1, "@1767225600");
        assert_eq!(v1[1].1, "Tue, 01 Jan 2030 00:00:00 GMT");
        assert_eq!(v1[2].1, "<https://docs.example.com/user/v2>; rel=\"successor-version\"");
        assert!(announced(&routes, "user-2.1.0").is_empty());
    }

    #[test]
    fn routes_are_named_for_the_access_log() {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"s","match":{"path_prefixes":["/"]},"default_version":"2","version_header":"x-v",
            "deployments":[{"version":"2.0.0"},{"version":"2.1.0"}]}]}"#,
        )
        .unwrap();
        let names = |routes: &[Value]| -> Vec<String> {
            routes.iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
        };
        let routes = routes(&catalog, false);
        assert_eq!(names(&routes), ["s-2.0.0", "s-2.1.0", "s-v2", "none"]);
        // Rendered for shadow steps, the line's read-only requests have a route of their own
        // (its mirror policies).
        assert_eq!(names(&super::routes(&catalog, true)), ["s-2.0.0", "s-2.1.0", "s-v2", "s-v2", "none"]);
        assert_eq!(routes[2]["metadata"]["filter_metadata"]["meshver"]["service"], "s");
        let format = |sidecar| {
            access_log("edge", &catalog, sidecar)["typed_config"]["log_format"]["text_format_source"]["inline_string"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let edge = format(false);
        for field in [
            "service=%METADATA(ROUTE:meshver:service)%",
            "version=%REQ(x-v)%",
            "route=%ROUTE_NAME%",
            "outcome=%RESPONSE_CODE_DETAILS%",
        ] {
            assert!(edge.contains(field), "{field} not in {edge}");
        }
        assert!(format(true).contains("route=%REQ(x-meshver-route)%"));
    }

    #[test]
    fn a_shadowing_mesh_mirrors_each_line_to_its_candidates_off_by_default() {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"s","match":{"path_prefixes":["/"]},"default_version":"2","deployments":[
            {"version":"1.0.0"},{"version":"2.0.0","weight":80},{"version":"2.1.0","weight":0},{"version":"2.2.0","weight":20}]}]}"#,
        )
        .unwrap();
        // Not rendered unless the mesh asks: no request pays for a mirror lookup.
        assert!(routes(&catalog, false).iter().all(|r| r["route"].get("request_mirror_policies").is_none()));
        let routes = routes(&catalog, true);
        let line: Vec<&Value> = routes.iter().filter(|r| r["name"] == "s-v2").collect();
        assert_eq!(line.len(), 2);
        let (safe, unsafe_methods) = (line[0], line[1]);
        assert_eq!(safe["match"]["headers"][1]["name"], ":method");
        assert_eq!(safe["match"]["headers"][1]["string_match"]["safe_regex"]["regex"], "^(GET|HEAD|OPTIONS)$");
        assert_eq!(unsafe_methods["match"]["headers"].as_array().unwrap().len(), 1);
        assert_eq!(safe["route"]["weighted_clusters"], unsafe_methods["route"]["weighted_clusters"]);
        let mirrors = |route: &Value| -> Vec<(String, String, u64)> {
            route["route"]["request_mirror_policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let fraction = &m["runtime_fraction"];
                    assert_eq!(fraction["default_value"]["denominator"], "HUNDRED");
                    (
                        m["cluster"].as_str().unwrap().to_owned(),
                        fraction["runtime_key"].as_str().unwrap().to_owned(),
                        fraction["default_value"]["numerator"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        // Every deployment of the line but the stable 2.0.0, at 0% until the runtime says otherwise.
        let expected = |root: &str| {
            ["s-2.1.0", "s-2.2.0"].map(|d| (format!("{d}-shadow"), format!("{root}.s-v2.{d}"), 0)).to_vec()
        };
        assert_eq!(mirrors(safe), expected("shadow"));
        assert_eq!(mirrors(unsafe_methods), expected("shadow_unsafe"));
        // A line of one has nothing to mirror to.
        let v1: Vec<&Value> = routes.iter().filter(|r| r["name"] == "s-v1").collect();
        assert_eq!(v1.len(), 1);
        assert!(v1[0]["route"].get("request_mirror_policies").is_none());
    }

    #[test]
    fn a_clients_own_meshver_headers_are_removed_before_any_filter() {
        let removed = |trust: bool| {
            let catalog = meshver::config::load(
                format!(
                    r#"{{"route_header":"x-meshver-to","trust_caller_headers":{trust},"services":[{{"name":"s",
                    "match":{{"path_prefixes":["/"]}},"default_version":"2","deployments":[{{"version":"2.0.0"}}]}}]}}"#
                )
                .as_bytes(),
            )
            .unwrap();
            let mutation = client_headers_removed(&catalog);
            assert_eq!(mutation["name"], "envoy.http.early_header_mutation.header_mutation");
            let mutations = mutation["typed_config"]["mutations"].as_array().unwrap().clone();
            mutations.iter().map(|m| m["remove"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        let routing = ["x-meshver-to", "x-meshver-sticky", "x-meshver-body"];
        assert_eq!(removed(false), [&routing[..], &["x-meshver-caller", "x-meshver-requires"]].concat());
        // A callee's inbound listener keeps its callers' claims, never their routing.
        assert_eq!(removed(true), routing);
    }

    #[test]
    fn deployments_within_a_line_announce_their_own_lifecycle() {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"s","match":{"path_prefixes":["/"]},"default_version":"2","deployments":[
            {"version":"2.0.0","lifecycle":{"deprecated":"2026-01-01"}},{"version":"2.1.0"}]}]}"#,
        )
        .unwrap();
        let routes = routes(&catalog, false);
        // The line's weighted cluster entry and the pinned route alike.
        let line = routes.iter().find(|r| r["match"]["headers"][0]["string_match"]["exact"] == "s-v2").unwrap();
        let clusters = line["route"]["weighted_clusters"]["clusters"].as_array().unwrap();
        let by_name = |name: &str| clusters.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(by_name("s-2.0.0")["response_headers_to_add"].as_array().unwrap().len(), 1);
        assert!(by_name("s-2.1.0").get("response_headers_to_add").is_none());
        assert_eq!(announced(&routes, "s-2.0.0").len(), 1);
        assert!(announced(&routes, "s-2.1.0").is_empty());
    }

    #[test]
    fn clusters_with_dots_are_named_whole() {
        let names: BTreeSet<String> =
            ["edge-forward", "user-2.1", "user-2.1.0", "user-v2", "x+y.1"].map(String::from).into();
        let tags = stats_tags(&names);
        assert_eq!(tags[..tags.len() - 1], meshver_stats_tags()[..]);
        let cluster = &tags[tags.len() - 1];
        assert_eq!(cluster["tag_name"], "envoy.cluster_name");
        // Only the dotted names, longest first, each literal.
        assert_eq!(cluster["regex"], r"^(?:cluster)\.((user-2\.1\.0|user-2\.1|x\+y\.1)\.)");
        let plain: BTreeSet<String> = ["user-v2".to_owned()].into();
        assert_eq!(stats_tags(&plain), meshver_stats_tags());
    }
}
