//! Request body contracts: which one applies to a request, compiled schemas.

use super::limits::{check_prefix, Limits};
use super::model::ContractConfig;
use super::schema::Schema;
use super::{covers, specificity, DataError};
use crate::version::RequestedVersion;

/// One compiled contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The version as configured, normalised (`2.1`).
    pub version: RequestedVersion,
    pub path_prefix: String,
    pub limits: Limits,
    pub schema: Schema,
    /// Its config path (`.contracts[2]`).
    pub at: String,
}

/// Compiles the contracts, refusing two that would apply to the same requests.
pub fn compile_contracts(configs: &[ContractConfig], errors: &mut Vec<DataError>) -> Vec<Contract> {
    let mut contracts: Vec<Contract> = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let at = format!(".contracts[{i}]");
        let before = errors.len();
        let version = match RequestedVersion::parse_str(&config.version) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(DataError::new(
                    format!("{at}.version"),
                    format!("{:?} is not a version (like 2, 2.1 or 2.1.0): {e}", config.version),
                ));
                None
            }
        };
        let path_prefix = config.path_prefix.clone().unwrap_or_else(|| "/".to_owned());
        check_prefix(&format!("{at}.path_prefix"), &path_prefix, errors);
        let mut limits = Limits::compile(&at, config.methods.as_deref(), None, "path_prefix", errors);
        limits.path_prefixes = Some(vec![path_prefix.clone()]);
        let schema = Schema::compile(&config.schema, &format!("{at}.schema"), errors);
        let Some(version) = version.filter(|_| errors.len() == before) else { continue };
        // One with methods is more specific than one without; two alike are ambiguous.
        let twin = contracts.iter().find(|c| {
            c.version == version
                && c.path_prefix == path_prefix
                && match (&c.limits.methods, &limits.methods) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                    _ => false,
                }
        });
        if let Some(twin) = twin {
            errors.push(DataError::new(
                at,
                format!(
                    "{} already has a contract for version {version}, path prefix {path_prefix} and the same methods: which applies would be ambiguous",
                    twin.at
                ),
            ));
            continue;
        }
        contracts.push(Contract { version, path_prefix, limits, schema, at });
    }
    contracts
}

/// The contract for a request: among those whose version covers the requested one and
/// whose method and path prefix match, the most specific version, then the longest prefix,
/// then one that names its methods over one that does not.
pub fn contract_for<'c>(
    contracts: &'c [Contract],
    requested: &RequestedVersion,
    method: &[u8],
    path: &[u8],
) -> Option<(usize, &'c Contract)> {
    contracts
        .iter()
        .enumerate()
        .filter(|(_, c)| covers(&c.version, requested) && c.limits.matches(method, path))
        .max_by_key(|(_, c)| (specificity(&c.version), c.path_prefix.len(), c.limits.methods.is_some()))
}
