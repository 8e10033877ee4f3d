//! Data compatibility before traffic moves: a deployment whose version's request contract
//! refuses bodies the previous version of its line accepted (`meshver::data::compatibility`)
//! is a breaking change inside a semver line. `check` reports such findings; `shift` and
//! `rollout` refuse to send traffic to an affected deployment unless told `--force`.

use crate::fail::{Fail, Outcome};
use meshver::config::{Catalog, Deployment, Service};
use meshver::data::{compatibility, Finding};

/// Every finding of the catalog, with the JSON path of the contract it is about.
pub fn findings(catalog: &Catalog) -> Vec<(String, Finding)> {
    let mut all = Vec::new();
    for (i, service) in catalog.services.iter().enumerate() {
        if let Some(data) = &service.data {
            for finding in compatibility(data) {
                all.push((format!("$.services[{i}].data{}", finding.path), finding));
            }
        }
    }
    all
}

/// Refuses to send traffic to `deployment` when its contract breaks its line, unless `force`.
pub fn refuse_breaking(service: &Service, deployment: &Deployment, force: bool) -> Outcome {
    let Some(data) = &service.data else {
        return Ok(());
    };
    let breaking: Vec<String> =
        compatibility(data).into_iter().filter(|f| f.affects(&deployment.version)).map(|f| f.message).collect();
    if breaking.is_empty() || force {
        return Ok(());
    }
    Err(Fail::new(
        format!("{} {} breaks bodies its line accepted: {}", service.name, deployment.version, breaking.join("; ")),
        "fix the contract, or pass --force to send it traffic anyway",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"{"services":[{"name":"user","match":{"path_prefixes":["/register"]},
        "default_version":"2","deployments":[{"version":"2.0.3"},{"version":"2.1.0"}],
        "data":{"contracts":[
            {"version":"2","path_prefix":"/register","schema":{"type":"object","properties":{"email":{"type":"string"}}}},
            {"version":"2.1","path_prefix":"/register","schema":{"type":"object","required":["email"]}}]}}]}"#;

    #[test]
    fn a_contract_that_breaks_its_line_is_reported_and_refused_without_force() {
        let catalog = meshver::config::load(CATALOG.as_bytes()).unwrap();
        let found = findings(&catalog);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0.starts_with("$.services[0].data.contracts[1]"), "{}", found[0].0);
        assert!(found[0].1.message.contains("/email"), "{}", found[0].1.message);
        let user = &catalog.services[0];
        let refused = refuse_breaking(user, &user.deployments[1], false).unwrap_err();
        assert!(refused.lines[0].contains("user 2.1.0 breaks bodies its line accepted"), "{:?}", refused.lines);
        assert!(refuse_breaking(user, &user.deployments[1], true).is_ok());
        assert!(refuse_breaking(user, &user.deployments[0], false).is_ok(), "2.0.3 is not affected");
    }
}
