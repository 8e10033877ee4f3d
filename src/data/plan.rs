//! What the body filter does for one request: the change steps that apply, the contract,
//! and the two rewrites (request up, response down).

use super::chain::{Change, Served};
use super::contract::Contract;
use super::schema::Violation;
use super::ServiceData;
use crate::version::RequestedVersion;
use serde_json::Value;
use std::fmt;

/// A body plan in compact form: `Copy`, so a filter can keep it between callbacks without
/// borrowing the catalog, and printable for a header (`s0.m3.c1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanId {
    served: Option<u16>,
    mask: u64,
    contract: Option<u16>,
}

impl PlanId {
    /// The text form: `s<served>.m<step mask, hex>.c<contract>`, `-` for none.
    pub fn encode(&self) -> String {
        let part = |v: Option<u16>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        format!("s{}.m{:x}.c{}", part(self.served), self.mask, part(self.contract))
    }

    /// Parses [`PlanId::encode`]'s text; `None` when it is not one.
    pub fn decode(text: &str) -> Option<PlanId> {
        let mut parts = text.split('.');
        let part = |p: Option<&str>, tag: char| -> Option<Option<u16>> {
            match p?.strip_prefix(tag)? {
                "-" => Some(None),
                n => n.parse().ok().map(Some),
            }
        };
        let served = part(parts.next(), 's')?;
        let mask = u64::from_str_radix(parts.next()?.strip_prefix('m')?, 16).ok()?;
        let contract = part(parts.next(), 'c')?;
        parts.next().is_none().then_some(PlanId { served, mask, contract })
    }
}

/// The body work for one request. `None` from [`ServiceData::body_plan`] means there is
/// none: the filter need not buffer the bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyPlan<'d> {
    data: &'d ServiceData,
    served: Option<&'d Served>,
    contract: Option<&'d Contract>,
    id: PlanId,
}

/// Why a body cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON (serde_json's detail, with line and column), or empty where JSON is needed.
    Malformed(String),
    /// The client's body breaks the contract; every failing field (up to a cap).
    Contract(Vec<Violation>),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(detail) => write!(f, "the body is not JSON: {detail}"),
            BodyError::Contract(violations) => {
                let texts: Vec<String> = violations.iter().map(ToString::to_string).collect();
                write!(f, "the body breaks the contract: {}", texts.join("; "))
            }
        }
    }
}

impl ServiceData {
    /// The plan for a request, from the version it asks for (as resolved: normalised, or
    /// the default applied), its method and its path (as the upstream sees it; the query
    /// is ignored). Cheap and allocation-free; deterministic, so any filter instance with
    /// the same catalog computes the same plan from the same three inputs.
    pub fn body_plan(&self, requested: &str, method: &[u8], path: &[u8]) -> Option<BodyPlan<'_>> {
        self.body_plan_for(&RequestedVersion::parse_str(requested).ok()?, method, path)
    }

    /// [`ServiceData::body_plan`] for a version already parsed.
    pub fn body_plan_for(&self, requested: &RequestedVersion, method: &[u8], path: &[u8]) -> Option<BodyPlan<'_>> {
        let served = self.served_for(requested);
        let mut mask = 0u64;
        if let Some((_, served)) = served {
            for (bit, j) in served.steps.iter().enumerate() {
                let applies = self.change(*j).is_some_and(|c| {
                    c.limits.matches(method, path) && !(c.request.is_empty() && c.response.is_empty())
                });
                if applies && bit < 64 {
                    mask |= 1 << bit;
                }
            }
        }
        let contract = super::contract::contract_for(&self.contracts, requested, method, path);
        if mask == 0 && contract.is_none() {
            return None;
        }
        let id = PlanId {
            served: served.and_then(|(i, _)| u16::try_from(i).ok()),
            mask,
            contract: contract.and_then(|(i, _)| u16::try_from(i).ok()),
        };
        Some(BodyPlan { data: self, served: served.map(|(_, s)| s), contract: contract.map(|(_, c)| c), id })
    }

    /// The plan a [`PlanId`] stands for; `None` when it does not fit this catalog (another
    /// config loaded since, or a forged value: strip client-sent copies of the header).
    pub fn plan(&self, id: PlanId) -> Option<BodyPlan<'_>> {
        let served = match id.served {
            Some(i) => Some(self.served.get(usize::from(i))?),
            None => None,
        };
        let steps = served.map_or(0, |s| s.steps.len());
        if steps < 64 && id.mask >> steps != 0 {
            return None;
        }
        let contract = match id.contract {
            Some(i) => Some(self.contracts.get(usize::from(i))?),
            None => None,
        };
        (id.mask != 0 || contract.is_some()).then_some(BodyPlan { data: self, served, contract, id })
    }

    /// [`ServiceData::plan`] from [`PlanId::encode`]'s text.
    pub fn decode_plan(&self, text: &str) -> Option<BodyPlan<'_>> {
        self.plan(PlanId::decode(text)?)
    }

    fn change(&self, j: usize) -> Option<&Change> {
        self.changes.get(j)
    }
}

impl<'d> BodyPlan<'d> {
    /// The compact form, to keep or to pass on in a header.
    pub fn id(&self) -> PlanId {
        self.id
    }

    /// The version whose deployments serve the request, when it is served by a successor.
    pub fn target(&self) -> Option<&'d RequestedVersion> {
        self.served.map(|s| &s.target)
    }

    /// The version of the contract checked on the request body, if one applies.
    pub fn contract_version(&self) -> Option<&'d RequestedVersion> {
        self.contract.map(|c| &c.version)
    }

    /// The contract's path prefix, if one applies.
    pub fn contract_path_prefix(&self) -> Option<&'d str> {
        self.contract.map(|c| c.path_prefix.as_str())
    }

    /// The largest body to buffer (the caller refuses larger ones; the rewrites do not look).
    pub fn max_body_bytes(&self) -> usize {
        self.data.max_body_bytes
    }

    /// Whether the request body must be buffered: a contract checks it or a step upgrades it.
    pub fn checks_request(&self) -> bool {
        self.contract.is_some() || self.steps().any(|c| !c.request.is_empty())
    }

    /// Whether the response body must be buffered and downgraded.
    pub fn has_response_steps(&self) -> bool {
        self.steps().any(|c| !c.response.is_empty())
    }

    /// The steps that apply, oldest first.
    fn steps(&self) -> impl DoubleEndedIterator<Item = &'d Change> + 'd {
        let mask = self.id.mask;
        let data = self.data;
        self.served
            .map(|s| s.steps.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(move |(bit, _)| *bit < 64 && mask & (1 << bit) != 0)
            .filter_map(move |(_, j)| data.change(*j))
    }

    /// Checks the client's body against the contract, then upgrades it through each step:
    /// `Ok(Some(new body))`, or `Ok(None)` when the body goes on byte for byte (nothing to
    /// upgrade, or an empty body with no contract). An empty body fails a contract.
    pub fn request(&self, body: &[u8]) -> Result<Option<Vec<u8>>, BodyError> {
        let upgrades = self.steps().any(|c| !c.request.is_empty());
        if self.contract.is_none() && (!upgrades || body.trim_ascii().is_empty()) {
            return Ok(None);
        }
        if body.trim_ascii().is_empty() {
            return Err(BodyError::Malformed("the body is empty, but its contract expects JSON".to_owned()));
        }
        let mut value = parse(body)?;
        if let Some(contract) = self.contract {
            let violations = contract.schema.violations(&value);
            if !violations.is_empty() {
                return Err(BodyError::Contract(violations));
            }
        }
        if !upgrades {
            return Ok(None);
        }
        for change in self.steps() {
            change.request.iter().for_each(|op| op.apply(&mut value));
        }
        serialise(&value)
    }

    /// Downgrades a response body through the steps in reverse: `Ok(Some(new body))`, or
    /// `Ok(None)` when there is nothing to downgrade (no response ops apply, empty body).
    pub fn response(&self, body: &[u8]) -> Result<Option<Vec<u8>>, BodyError> {
        if !self.has_response_steps() || body.trim_ascii().is_empty() {
            return Ok(None);
        }
        let mut value = parse(body)?;
        for change in self.steps().rev() {
            change.response.iter().for_each(|op| op.apply(&mut value));
        }
        serialise(&value)
    }
}

/// serde_json refuses nesting deeper than 128, so neither parsing nor dropping the value
/// can run out of stack.
fn parse(body: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
}

/// Compact JSON; object members come out in key order (serde_json's map is sorted).
fn serialise(value: &Value) -> Result<Option<Vec<u8>>, BodyError> {
    serde_json::to_vec(value).map(Some).map_err(|e| BodyError::Malformed(e.to_string()))
}
