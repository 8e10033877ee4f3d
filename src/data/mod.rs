//! The data half: request and response **bodies** across API versions.
//!
//! The header half of meshver routes a request to a deployment that can serve its version.
//! This module covers what headers cannot: a client of a version with no deployment left
//! is served by a successor, its bodies upgraded on the way in and downgraded on the way
//! out; and request bodies are checked against a per-version contract before they reach
//! any upstream. It is plain Rust over `serde_json` values, tested natively; the host
//! buffers bodies and calls [`BodyPlan::request`] and [`BodyPlan::response`].
//!
//! # Configuration: a service's `data` object
//!
//! ```json
//! "data": {
//!   "max_body_bytes": 1048576,
//!   "served_by_successor": ["1"],
//!   "changes": [
//!     {"from": "1", "to": "2", "methods": ["POST"], "path_prefixes": ["/register"],
//!      "request":  [{"op": "rename", "from": "/name", "to": "/full_name"}],
//!      "response": [{"op": "rename", "from": "/full_name", "to": "/name"}]}
//!   ],
//!   "contracts": [
//!     {"version": "2.1", "path_prefix": "/register", "methods": ["POST"],
//!      "schema": {"type": "object", "required": ["email"],
//!                 "properties": {"email": {"type": "string", "minLength": 3}}}}
//!   ]
//! }
//! ```
//!
//! | field | default | meaning |
//! | --- | --- | --- |
//! | `max_body_bytes` | 1048576 | largest body buffered, 1 to 16777216; a larger one is refused |
//! | `served_by_successor` | `[]` | versions (`"1"`, `"2.1"`) with no deployment, served along their chain of changes |
//! | `changes[].from`, `.to` | required | adjacent versions, each a major or major.minor |
//! | `changes[].methods` | all | upper-case HTTP methods the step applies to |
//! | `changes[].path_prefixes` | all | path prefixes (start with `/`) the step applies to |
//! | `changes[].request` | `[]` | ops that upgrade a request body from `from` to `to`, in order |
//! | `changes[].response` | `[]` | ops that downgrade a response body from `to` to `from`, in order |
//! | `contracts[].version` | required | major, major.minor or full version |
//! | `contracts[].path_prefix` | `/` | path prefix it applies to |
//! | `contracts[].methods` | all | upper-case HTTP methods it applies to |
//! | `contracts[].schema` | required | the JSON Schema subset below |
//!
//! `served_by_successor` entries are a major or major.minor; at most 64 changes. Methods
//! match the request's `:method` exactly (upper case); path prefixes match bytewise, like
//! Envoy's route `prefix`, the path as the upstream sees it (version segment or suffix
//! removed), its query ignored.
//!
//! ## Served by a successor
//!
//! A request for a version listed in `served_by_successor` (or a more specific one:
//! `"1"` also stands for `1.4` and `1.4.2`) is served by the first version along its chain
//! — the change `from` it, then the change `from` that change's `to`, and so on — that has
//! a deployment ([`ServiceData::successor_for`] names it, for routing). The request body
//! goes through each step's `request` ops in chain order (`1 → 2 → 3`); the response body
//! through each step's `response` ops in reverse order (`3 → 2 → 1`). A step whose `methods`
//! or `path_prefixes` leave the request out is skipped; the chain goes on. Changes are only
//! used on such chains: a request for a version with deployments is never rewritten.
//!
//! The filter refuses to load when: a listed version has a deployment; its chain has a gap
//! (no change leads on before a version with deployments) or a cycle; two changes start
//! from the same version; or a step reads a field (with `rename`, `map`, `wrap`, `unwrap`)
//! that an earlier step of the same chain, in the same direction, removed or renamed away
//! (and the two steps' limits overlap).
//!
//! ## Ops
//!
//! Pointers are RFC 6901 JSON pointers (`/address/city`, `~1` for `/`, `~0` for `~`, `""`
//! for the whole body) with one extension: a segment `*` stands for every element of an
//! array (`/items/*/qty` is the `qty` of each element of `items`). A decimal segment also
//! indexes arrays. At most 32 segments. An op whose field is absent does nothing.
//!
//! | op | fields | effect |
//! | --- | --- | --- |
//! | `rename` | `from`, `to` | moves the value at `from` to `to`, replacing what is there and creating missing objects on the way; nothing moves when a non-object stands in the way. Neither may be `""` or end in `*`; a `*` must be at the same positions in both, after the same segments (it moves a field within each element) |
//! | `add` | `path`, `value` | sets `path` to `value` when absent (a default), creating missing objects on the way |
//! | `remove` | `path` | removes the member (or array element) at `path` |
//! | `map` | `path`, `values` | replaces a string at `path` found among the keys of `values` (strings) by its value; other values stay |
//! | `wrap` | `path`, `into` | the value at `path` (`""`: the body) becomes `{"<into>": value}` |
//! | `unwrap` | `path`, `from` | the object at `path` (`""`: the body) becomes its member `from`, if it has one |
//!
//! Ops never fail: one whose pointer reaches nothing in a body (a string body, say, or an
//! array where an object was expected) leaves it as it is. A rewritten body is compact
//! JSON with object members in key order, and integers beyond 64 bits carried as doubles;
//! a body that needs no rewriting (no request ops apply, only a contract) is passed on byte
//! for byte.
//!
//! ## Contracts
//!
//! The contract that applies to a request is, among those whose `methods` and
//! `path_prefix` match, the one whose `version` is the longest prefix of the requested
//! version (`2.1` applies to requests for `2.1` and `2.1.x`; `2` to requests for `2`, and
//! to `2.x` where no more specific contract exists), then the one with the longest
//! `path_prefix`, then one that lists `methods` over one that does not. Two contracts with
//! the same version and path prefix that both list a common method, or both list none,
//! are refused. The contract checks the **client's** body, before any upgrade; every
//! failing field is reported with its JSON pointer (up to 64, then a count). An empty or
//! malformed body fails a contract.
//!
//! The schema subset (draft 2020-12 meanings):
//!
//! | keyword | accepted form |
//! | --- | --- |
//! | `type` | `object`, `array`, `string`, `number`, `integer`, `boolean`, `null`, or an array of them |
//! | `properties` | an object of schemas |
//! | `required` | an array of property names |
//! | `additionalProperties` | `true` or `false` (not a schema) |
//! | `items` | one schema for every element (not the tuple form) |
//! | `enum`, `const` | values; numbers compare by value (`1` equals `1.0`) |
//! | `minLength`, `maxLength` | non-negative integers, counted in Unicode code points |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` | numbers |
//! | `minItems`, `maxItems` | non-negative integers |
//! | `$schema`, `title`, `description`, `examples`, `default` | accepted and ignored |
//!
//! Any other keyword (`pattern`, `$ref`, `oneOf`, …) is a config error naming its path.
//! Schemas nest at most 32 levels.
//!
//! ## Compatibility
//!
//! [`compatibility`] compares each contract with the previous one of the same major line,
//! path prefix and overlapping methods, and reports every way the newer one refuses a body
//! the older one accepted (not load errors: the CLI's `check` shows them, `rollout` and
//! `shift` refuse without `--force`). Where the previous version has one contract per
//! method set, the newer one is compared with each that shares a method. The kinds, each
//! named with the newer contract's config path and the field's JSON pointer:
//!
//! | kind | example |
//! | --- | --- |
//! | newly required | `contract 2.1 (/register) requires /email, which 2 did not require: bodies 2 accepted are refused` |
//! | property removed | `… no longer accepts /nickname (additionalProperties is false), which 2 accepted: …` |
//! | closed | `… refuses members of the body that its properties do not list, which 2 accepted: …` |
//! | narrowed type | `… narrows the type of /age from number to integer, which 2 accepted: …` (or `accepts only …, where 2 accepted any type`) |
//! | narrowed values | `… no longer accepts "pending" at /status, which 2 accepted: …` (or `limits /status to …`) |
//! | tighter bound | `… raises minLength of /name from 1 to 3: …`, `lowers maximum …`, `sets maxItems 10 on /tags, which 2 did not limit: …` |
//!
//! A property the newer contract adds (where the older accepted any member) is compared
//! with "anything", so constraining it is a finding; array items are named `/tags/*`.
//! [`Finding::affects`] maps a deployment (`2.1.0`) to the findings of the contract
//! covering its version.
//!
//! # Passing a plan on
//!
//! [`ServiceData::body_plan`] is deterministic in (requested version, method, path), so a
//! second filter instance with the same catalog can recompute it. It also has a compact
//! `Copy` form, [`PlanId`], with a text encoding (`s0.m3.c-`: served-version entry, mask
//! of the chain's steps that apply, contract; [`PlanId::encode`], [`ServiceData::decode_plan`])
//! for keeping it between callbacks or passing it in a header the filter owns. A decoded
//! plan is checked against the catalog's shape, not against the request: never take one
//! from a client.

mod chain;
mod compat;
mod contract;
mod limits;
pub mod model;
mod ops;
mod plan;
mod pointer;
mod schema;

pub use compat::{compatibility, Finding, FindingKind};
pub use plan::{BodyError, BodyPlan, PlanId};
pub use schema::Violation;

use crate::version::RequestedVersion;
use semver::Version;
use std::fmt;

/// Request header in which the header filter hands the body filter its decision:
/// `<service> <plan id> <requested version>` (the filter owns `x-meshver-` headers: clients
/// cannot set it). Here, in the leaf the decision comes from, so resolve and filter both use it.
pub const BODY_HEADER: &str = "x-meshver-body";

/// The root id (Envoy's `root_id`, Istio's `pluginName`) under which the plugin runs as the
/// body filter; any other runs the header filter.
pub const BODY_ROOT_ID: &str = "meshver-body";

/// Default `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Largest `max_body_bytes` allowed: 16 MiB.
pub const MAX_MAX_BODY_BYTES: usize = 16 << 20;

/// One mistake in a `data` object; `path` is relative to it (`.changes[0].request[1].from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub path: String,
    pub message: String,
}

impl DataError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        DataError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A service's validated `data` object, ready for the filter.
#[derive(Debug, Clone)]
pub struct ServiceData {
    max_body_bytes: usize,
    changes: Vec<chain::Change>,
    served: Vec<chain::Served>,
    contracts: Vec<contract::Contract>,
}

/// Validates a service's `data` object against its deployed versions, collecting every
/// mistake.
pub fn compile(config: model::DataConfig, deployed: &[Version]) -> Result<ServiceData, Vec<DataError>> {
    let mut errors = Vec::new();
    let max_body_bytes = match config.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_MAX_BODY_BYTES).contains(&n) => n,
            _ => {
                errors.push(DataError::new(
                    ".max_body_bytes",
                    format!("{n} is not from 1 to {MAX_MAX_BODY_BYTES} (16 MiB)"),
                ));
                DEFAULT_MAX_BODY_BYTES
            }
        },
    };
    let changes = chain::compile_changes(&config.changes, &mut errors);
    let served = chain::compile_served(&config.served_by_successor, &changes, deployed, &mut errors);
    chain::check_reads_after_removal(&served, &changes, &mut errors);
    let contracts = contract::compile_contracts(&config.contracts, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    // No errors, so every change compiled: the served chains' indices stay valid.
    Ok(ServiceData { max_body_bytes, changes: changes.into_iter().flatten().collect(), served, contracts })
}

impl ServiceData {
    /// The version whose deployments serve a request for `requested`, when `requested` is
    /// served by a successor (route as if it had been asked for); `None` otherwise.
    pub fn successor_for(&self, requested: &RequestedVersion) -> Option<&RequestedVersion> {
        self.served_for(requested).map(|(_, s)| &s.target)
    }

    /// The versions served by their successor, as declared.
    pub fn served_versions(&self) -> impl Iterator<Item = &RequestedVersion> {
        self.served.iter().map(|s| &s.version)
    }

    /// Largest body the filter buffers for this service.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The most specific served-by-successor entry standing for a request.
    fn served_for(&self, requested: &RequestedVersion) -> Option<(usize, &chain::Served)> {
        self.served
            .iter()
            .enumerate()
            .filter(|(_, s)| chain::serves(s, requested))
            .max_by_key(|(_, s)| specificity(&s.version))
    }
}

/// Whether `general` is a prefix of `specific` (`2` of `2.1.3`, `2.1` of `2.1`).
fn covers(general: &RequestedVersion, specific: &RequestedVersion) -> bool {
    let part = |g: Option<u64>, s: Option<u64>| g.is_none() || g == s;
    general.major == specific.major && part(general.minor, specific.minor) && part(general.patch, specific.patch)
}

/// How many components a version names (1 to 3).
fn specificity(v: &RequestedVersion) -> usize {
    1 + usize::from(v.minor.is_some()) + usize::from(v.patch.is_some())
}

#[cfg(test)]
mod tests;
