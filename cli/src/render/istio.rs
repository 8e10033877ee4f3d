//! `meshver render istio`: a WasmPlugin, and per service a DestinationRule and a VirtualService.

use super::buckets::bucket_regex;
use super::STICKY_HEADER;
use crate::catalog::{configured_weights, CatalogFile};
use crate::fail::{Fail, Outcome};
use meshver::config::{Deployment, Service};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the operator chooses about the Istio resources.
pub struct IstioOptions {
    pub namespace: Option<String>,
    /// Where Istio fetches the module: `oci://…`, `https://…` or `file://…`.
    pub image: String,
    /// `key=value` labels of the workloads that run the filter (the callers); none = all.
    pub selector: BTreeMap<String, String>,
}

/// All resources, in apply order.
pub fn render(file: &CatalogFile, options: &IstioOptions) -> Outcome<Vec<Value>> {
    let plugin_config: Value = serde_json::from_slice(&file.text)
        .map_err(|e| Fail::new(format!("{}: {e}", file.path.display()), "fix the catalog JSON"))?;
    let metadata = |name: &str| match &options.namespace {
        Some(ns) => json!({"name": name, "namespace": ns}),
        None => json!({"name": name}),
    };
    let mut spec = json!({
        "url": options.image,
        "phase": "AUTHN",
        "failStrategy": "FAIL_CLOSE",
        "pluginName": "meshver",
        "type": "HTTP",
        // The route is chosen where the request leaves: at the gateway or the caller's
        // sidecar, so that is where the filter must run.
        "match": [{"mode": "CLIENT"}],
        "pluginConfig": plugin_config,
    });
    if !options.selector.is_empty() {
        spec["selector"] = json!({"matchLabels": options.selector});
    }
    let mut resources = vec![json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata("meshver"),
        "spec": spec,
    })];
    for service in &file.catalog.services {
        let host = match &options.namespace {
            Some(ns) => format!("{}.{ns}.svc.cluster.local", service.name),
            None => service.name.clone(),
        };
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
            "spec": {"hosts": [host], "http": http_routes(service, &subsets, &host, &file.catalog.route_header)},
        }));
    }
    Ok(resources)
}

/// A subset name (DNS-1123 label) per deployment, in the service's order, all distinct.
fn subset_names(service: &Service) -> Vec<String> {
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

fn http_routes(service: &Service, subsets: &[String], host: &str, route_header: &str) -> Vec<Value> {
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
    let strip = json!({"request": {"remove": [route_header, STICKY_HEADER]}});
    let mut routes = Vec::new();
    for d in &service.deployments {
        routes.push(json!({
            "name": sanitize(&d.route),
            "match": [{"headers": {route_header: {"exact": d.route}}}],
            "route": [destination(d)],
            "headers": strip,
        }));
    }
    for line in &service.lines {
        let deployments = service.line_deployments(line);
        let weights = configured_weights(deployments);
        // Newest first, like Envoy's weighted_clusters: buckets [0, w_newest) go to the newest.
        let newest_first: Vec<_> = deployments.iter().zip(&weights).rev().collect();
        if deployments.len() > 1 {
            let mut lo = 0;
            for (d, w) in &newest_first {
                let hi = lo + **w;
                if let Some(regex) = bucket_regex(lo, hi) {
                    routes.push(json!({
                        "name": format!("{}-sticky-{}", sanitize(&line.route), sanitize(&d.route)),
                        "match": [{"headers": {
                            route_header: {"exact": line.route},
                            STICKY_HEADER: {"regex": regex},
                        }}],
                        "route": [destination(d)],
                        "headers": strip,
                    }));
                }
                lo = hi;
            }
        }
        routes.push(json!({
            "name": sanitize(&line.route),
            "match": [{"headers": {route_header: {"exact": line.route}}}],
            "route": newest_first.iter().map(|(d, w)| {
                let mut to = destination(d);
                to["weight"] = json!(w);
                to
            }).collect::<Vec<_>>(),
            "headers": strip,
        }));
    }
    routes
}

/// Multi-document YAML, `---` between documents.
pub fn to_yaml(resources: &[Value]) -> Outcome<String> {
    let mut out = String::new();
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_yaml_ng::to_string(resource)
            .map_err(|e| Fail::new(format!("cannot write YAML: {e}"), "report this as a bug"))?;
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn subset_names_are_dns_labels() {
        assert_eq!(sanitize("user-2.1.0"), "user-2-1-0");
        assert_eq!(sanitize("User_2.1.0-rc.1"), "user-2-1-0-rc-1");
        assert_eq!(sanitize("..."), "deployment");
        assert_eq!(sanitize(&"a".repeat(80)).len(), 63);
    }
}
