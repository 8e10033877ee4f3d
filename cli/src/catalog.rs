//! The catalog as the CLI sees it: loaded with the filter's own `meshver::config::load`,
//! plus the questions operators ask of it (which line, which weights, which is stable).

use crate::fail::{Fail, Outcome};
use meshver::config::{Catalog, Deployment, Line, Service};
use std::path::{Path, PathBuf};

/// A catalog file, validated exactly as the filter validates it.
pub struct CatalogFile {
    pub path: PathBuf,
    /// The file's bytes, as written (embedded in rendered configs).
    pub text: Vec<u8>,
    pub catalog: Catalog,
}

/// Reads and validates a catalog; on errors every one is reported as `FILE: $.path: message`.
pub fn load_file(path: &Path) -> Outcome<CatalogFile> {
    validate(path, read(path)?)
}

/// Reads a catalog, sets `overlay`'s top-level fields on it, and validates the result
/// exactly as the filter will (errors name the file and the JSON path).
pub fn load_file_with(path: &Path, overlay: &[(&str, serde_json::Value)]) -> Outcome<CatalogFile> {
    if overlay.is_empty() {
        return load_file(path);
    }
    let mut value: serde_json::Value = serde_json::from_slice(&read(path)?)
        .map_err(|e| Fail::new(format!("{}: {e}", path.display()), "fix the catalog's JSON"))?;
    let Some(object) = value.as_object_mut() else {
        return Err(Fail::new(format!("{}: the catalog is not a JSON object", path.display()), "fix the catalog"));
    };
    for (key, field) in overlay {
        object.insert((*key).to_owned(), field.clone());
    }
    let text = serde_json::to_vec(&value)
        .map_err(|e| Fail::new(format!("cannot write catalog {}: {e}", path.display()), "fix the catalog"))?;
    validate(path, text)
}

fn read(path: &Path) -> Outcome<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Fail::new(format!("cannot read catalog {}: {e}", path.display()), "give the path of a catalog JSON file")
    })
}

/// The filter's own validation of a catalog's bytes, errors named after the file.
fn validate(path: &Path, text: Vec<u8>) -> Outcome<CatalogFile> {
    let catalog = meshver::config::load(&text).map_err(|errors| {
        Fail::report(errors.0.iter().map(|e| format!("{}: {}: {}", path.display(), e.path, e.message)).collect())
    })?;
    Ok(CatalogFile { path: path.to_owned(), text, catalog })
}

/// Weights a line starts with: the catalog's, or an even split summing to 100 when the
/// catalog gives none (the oldest deployments get the remainder). Oldest first.
pub fn configured_weights(deployments: &[Deployment]) -> Vec<u32> {
    if deployments.iter().all(|d| d.weight.is_some()) {
        return deployments.iter().map(|d| d.weight.unwrap_or(0)).collect();
    }
    let count = deployments.len() as u32;
    (0..count).map(|i| 100 / count + u32::from(i < 100 % count)).collect()
}

/// Index of the stable deployment of a line: the highest configured weight, ties to the oldest.
pub fn stable_index(deployments: &[Deployment]) -> usize {
    let weights = configured_weights(deployments);
    let mut best = 0;
    for (i, w) in weights.iter().enumerate() {
        if *w > weights.get(best).copied().unwrap_or(0) {
            best = i;
        }
    }
    best
}

/// The Envoy runtime key prefix of a line's weighted route: keys are `<prefix>.<cluster>`.
pub fn runtime_prefix(line: &Line) -> String {
    format!("routing.{}", line.route)
}

/// The Envoy runtime key of a deployment's weight in its line (`routing.user-v2.user-2.1.0`).
pub fn runtime_key(line: &Line, deployment: &Deployment) -> String {
    format!("{}.{}", runtime_prefix(line), deployment.route)
}

/// A service by name, or a one-line error listing the known ones.
pub fn find_service<'a>(services: &'a [Service], name: &str) -> Outcome<&'a Service> {
    services.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        Fail::new(format!("service {name:?} is not in the catalog"), format!("use one of: {}", known.join(", ")))
    })
}

/// A deployment by version (`2.1.0`), with its line.
pub fn find_deployment<'a>(service: &'a Service, version: &str) -> Outcome<(&'a Line, usize)> {
    let known = || service.supported_versions.join(", ");
    let parsed = semver::Version::parse(version.trim_start_matches('v')).map_err(|_| {
        Fail::new(
            format!("{version:?} is not a full version like 2.1.0"),
            format!("use a deployed version of {}: {}", service.name, known()),
        )
    })?;
    let line = service.line(parsed.major);
    let index = line.and_then(|l| service.line_deployments(l).iter().position(|d| d.version == parsed));
    match (line, index) {
        (Some(line), Some(index)) => Ok((line, index)),
        _ => Err(Fail::new(
            format!("{} has no deployment {parsed}", service.name),
            format!("use a deployed version: {}", known()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: &str) -> Service {
        let catalog = meshver::config::load(json.as_bytes()).unwrap();
        catalog.services.into_iter().next().unwrap()
    }

    const THREE: &str = r#"{"services":[{"name":"user","match":{"path_prefixes":["/"]},"default_version":"1",
        "deployments":[{"version":"2.1.0"},{"version":"1.0.0"},{"version":"2.0.0"},{"version":"2.2.0"}]}]}"#;

    #[test]
    fn even_weights_when_the_catalog_gives_none() {
        let s = service(THREE);
        let line = s.line(2).unwrap();
        let deps = s.line_deployments(line);
        assert_eq!(deps.iter().map(|d| d.version.to_string()).collect::<Vec<_>>(), ["2.0.0", "2.1.0", "2.2.0"]);
        assert_eq!(configured_weights(deps), [34, 33, 33]);
        assert_eq!(stable_index(deps), 0);
    }

    #[test]
    fn stable_is_the_heaviest_then_the_oldest() {
        let s = service(
            r#"{"services":[{"name":"user","match":{"path_prefixes":["/"]},"default_version":"2",
            "deployments":[{"version":"2.0.0","weight":10},{"version":"2.1.0","weight":90}]}]}"#,
        );
        assert_eq!(stable_index(s.line_deployments(s.line(2).unwrap())), 1);
        let tie = service(
            r#"{"services":[{"name":"user","match":{"path_prefixes":["/"]},"default_version":"2",
            "deployments":[{"version":"2.0.0","weight":50},{"version":"2.1.0","weight":50}]}]}"#,
        );
        assert_eq!(stable_index(tie.line_deployments(tie.line(2).unwrap())), 0);
    }

    #[test]
    fn finds_deployments_and_refuses_unknown_versions() {
        let s = service(THREE);
        let (line, index) = find_deployment(&s, "2.2.0").unwrap();
        assert_eq!((line.major, index), (2, 2));
        assert!(find_deployment(&s, "3.0.0").unwrap_err().lines[0].contains("has no deployment 3.0.0"));
        assert!(find_deployment(&s, "2").unwrap_err().lines[0].contains("not a full version"));
    }
}
