//! Change steps between versions, and the chains that serve a version with no deployment
//! through its successors.

use super::limits::Limits;
use super::model::ChangeConfig;
use super::ops::Op;
use super::{covers, DataError};
use crate::version::RequestedVersion;
use semver::Version;

/// The most changes a service may list: a plan marks its steps in one `u64`.
pub const MAX_CHANGES: usize = 64;

/// One compiled change step.
#[derive(Debug, Clone)]
pub struct Change {
    pub from: RequestedVersion,
    pub to: RequestedVersion,
    pub limits: Limits,
    /// Upgrade ops, applied in order on the way in.
    pub request: Vec<Op>,
    /// Downgrade ops, applied in order on the way out.
    pub response: Vec<Op>,
}

/// A version with no deployment and the steps that lead to the one serving it.
#[derive(Debug, Clone)]
pub struct Served {
    pub version: RequestedVersion,
    /// Indices into the changes, oldest first.
    pub steps: Vec<usize>,
    /// The first version along the chain with deployments.
    pub target: RequestedVersion,
}

/// A change version: a major or major.minor.
fn step_version(at: &str, text: &str, errors: &mut Vec<DataError>) -> Option<RequestedVersion> {
    match RequestedVersion::parse_str(text) {
        Ok(v) if v.patch.is_none() => Some(v),
        Ok(_) => {
            errors.push(DataError::new(
                at,
                format!("{text:?} names a patch: give a major or major.minor (like 2 or 2.1)"),
            ));
            None
        }
        Err(e) => {
            errors.push(DataError::new(at, format!("{text:?} is not a version (like 2 or 2.1): {e}")));
            None
        }
    }
}

/// Compiles the changes; `None` entries stand for changes with errors (reported).
pub fn compile_changes(configs: &[ChangeConfig], errors: &mut Vec<DataError>) -> Vec<Option<Change>> {
    if configs.len() > MAX_CHANGES {
        errors.push(DataError::new(".changes", format!("at most {MAX_CHANGES} changes are supported")));
    }
    let mut changes: Vec<Option<Change>> = Vec::with_capacity(configs.len());
    for (j, config) in configs.iter().enumerate() {
        let at = format!(".changes[{j}]");
        let from = step_version(&format!("{at}.from"), &config.from, errors);
        let to = step_version(&format!("{at}.to"), &config.to, errors);
        if let (Some(from), Some(to)) = (from, to) {
            if from.same_range(&to) {
                errors.push(DataError::new(
                    format!("{at}.to"),
                    format!("a change must lead from {from} to another version"),
                ));
            }
            let same_from = |c: &ChangeConfig| RequestedVersion::parse_str(&c.from).is_ok_and(|f| f.same_range(&from));
            if let Some(first) = configs.iter().take(j).position(same_from) {
                errors.push(DataError::new(
                    format!("{at}.from"),
                    format!(
                        "another change (.changes[{first}]) already leads on from {from}: the chain would be ambiguous"
                    ),
                ));
            }
        }
        let limits =
            Limits::compile(&at, config.methods.as_deref(), config.path_prefixes.as_deref(), "path_prefixes", errors);
        let ops = |name: &str, list: &[super::model::OpConfig], errors: &mut Vec<DataError>| -> Option<Vec<Op>> {
            let before = errors.len();
            let ops: Vec<Option<Op>> =
                list.iter().enumerate().map(|(k, op)| Op::compile(op, &format!("{at}.{name}[{k}]"), errors)).collect();
            (errors.len() == before).then(|| ops.into_iter().flatten().collect())
        };
        let request = ops("request", &config.request, errors);
        let response = ops("response", &config.response, errors);
        changes.push(match (from, to, request, response) {
            (Some(from), Some(to), Some(request), Some(response)) => {
                Some(Change { from, to, limits, request, response })
            }
            _ => None,
        });
    }
    changes
}

/// Resolves each served-by-successor version to its chain of steps.
pub fn compile_served(
    texts: &[String],
    changes: &[Option<Change>],
    deployed: &[Version],
    errors: &mut Vec<DataError>,
) -> Vec<Served> {
    let has_deployments = |v: &RequestedVersion| deployed.iter().any(|d| v.is_served_by(d));
    let mut served: Vec<Served> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let at = format!(".served_by_successor[{i}]");
        let Some(version) = step_version(&at, text, errors) else { continue };
        if served.iter().any(|s| s.version.same_range(&version)) {
            errors.push(DataError::new(at, format!("version {version} is listed twice")));
            continue;
        }
        if let Some(d) = deployed.iter().find(|d| version.is_served_by(d)) {
            errors.push(DataError::new(
                at,
                format!("version {version} has a deployment ({d}): only versions with no deployment can be served by a successor"),
            ));
            continue;
        }
        let mut steps = Vec::new();
        let mut current = version;
        let target = loop {
            let next = changes.iter().position(|c| c.as_ref().is_some_and(|c| c.from.same_range(&current)));
            let Some((j, change)) = next.and_then(|j| Some((j, changes.get(j)?.as_ref()?))) else {
                // A change with errors of its own is reported at its path; do not pile on.
                let broken = changes.iter().any(Option::is_none);
                if !broken {
                    errors.push(DataError::new(
                        &at,
                        format!(
                            "version {version} is served by its successor, but no change leads on from {current}{}",
                            if steps.is_empty() { String::new() } else { " to a version with deployments".to_owned() }
                        ),
                    ));
                }
                break None;
            };
            if steps.contains(&j) {
                errors.push(DataError::new(
                    &at,
                    format!("the changes from {version} go round in a cycle (back to {}) before any version with deployments", change.from),
                ));
                break None;
            }
            steps.push(j);
            current = change.to;
            if has_deployments(&current) {
                break Some(current);
            }
        };
        if let Some(target) = target {
            served.push(Served { version, steps, target });
        }
    }
    served
}

/// Refuses a step that reads a field an earlier step of the same chain, in the same
/// direction, removed or renamed away: on that chain it would never find it.
pub fn check_reads_after_removal(served: &[Served], changes: &[Option<Change>], errors: &mut Vec<DataError>) {
    struct Gone<'c> {
        pointer: &'c super::pointer::Pointer,
        position: usize,
        change: usize,
        op: usize,
        renamed: bool,
    }
    let mut reported = std::collections::BTreeSet::new();
    for chain in served {
        for (direction, reverse) in [("request", false), ("response", true)] {
            let mut order: Vec<usize> = chain.steps.clone();
            if reverse {
                order.reverse();
            }
            let mut gone: Vec<Gone<'_>> = Vec::new();
            for (position, j) in order.into_iter().enumerate() {
                let Some(Some(change)) = changes.get(j) else { continue };
                let ops = if reverse { &change.response } else { &change.request };
                for (k, op) in ops.iter().enumerate() {
                    if let Some((read, field)) = op.reads() {
                        let earlier = gone.iter().find(|g| {
                            g.position < position
                                && g.pointer.covers(read)
                                && changes
                                    .get(g.change)
                                    .and_then(Option::as_ref)
                                    .is_some_and(|c| c.limits.overlap(&change.limits))
                        });
                        if let Some(g) = earlier {
                            let path = format!(".changes[{j}].{direction}[{k}].{field}");
                            if reported.insert(path.clone()) {
                                let how = if g.renamed { "renamed away" } else { "removed" };
                                errors.push(DataError::new(
                                    path,
                                    format!(
                                        "reads {read}, a field another step removed: on the chain from {}, .changes[{}].{direction}[{}] {how} {} earlier",
                                        chain.version, g.change, g.op, g.pointer
                                    ),
                                ));
                            }
                        }
                    }
                    if let Some(put) = op.puts() {
                        gone.retain(|g| !put.covers(g.pointer) && !g.pointer.covers(put));
                    }
                    if let Some(taken) = op.takes_away() {
                        let renamed = matches!(op, super::ops::Op::Rename { .. });
                        gone.push(Gone { pointer: taken, position, change: j, op: k, renamed });
                    }
                }
            }
        }
    }
}

/// Whether a served entry stands for a request (`1` stands for `1` and `1.4`).
pub fn serves(served: &Served, requested: &RequestedVersion) -> bool {
    covers(&served.version, requested)
}
