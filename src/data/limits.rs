//! Which requests a change step or a contract applies to: methods and path prefixes.

use super::DataError;

/// Methods and path prefixes; `None` means all.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub methods: Option<Vec<String>>,
    pub path_prefixes: Option<Vec<String>>,
}

impl Limits {
    /// Validates configured limits; `at` is the path of the object holding them.
    pub fn compile(
        at: &str,
        methods: Option<&[String]>,
        prefixes: Option<&[String]>,
        prefix_field: &str,
        errors: &mut Vec<DataError>,
    ) -> Limits {
        if let Some(methods) = methods {
            if methods.is_empty() {
                errors.push(DataError::new(
                    format!("{at}.methods"),
                    "give at least one method, or leave methods out for all",
                ));
            }
            for (i, method) in methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    errors.push(DataError::new(
                        format!("{at}.methods[{i}]"),
                        format!("{method:?} is not an upper-case HTTP method (like POST)"),
                    ));
                }
            }
        }
        if let Some(prefixes) = prefixes {
            if prefixes.is_empty() {
                errors.push(DataError::new(
                    format!("{at}.{prefix_field}"),
                    "give at least one path prefix, or leave it out for all paths",
                ));
            }
            for (i, prefix) in prefixes.iter().enumerate() {
                check_prefix(&format!("{at}.{prefix_field}[{i}]"), prefix, errors);
            }
        }
        Limits { methods: methods.map(<[String]>::to_vec), path_prefixes: prefixes.map(<[String]>::to_vec) }
    }

    /// Whether a request is within these limits. The query (after `?`) is ignored; prefixes
    /// match bytewise, like Envoy's route `prefix`.
    pub fn matches(&self, method: &[u8], path: &[u8]) -> bool {
        let path = path.split(|b| *b == b'?').next().unwrap_or_default();
        self.methods.as_ref().is_none_or(|m| m.iter().any(|m| m.as_bytes() == method))
            && self.path_prefixes.as_ref().is_none_or(|p| p.iter().any(|p| path.starts_with(p.as_bytes())))
    }

    /// Whether some request could be within both limits.
    pub fn overlap(&self, other: &Limits) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        let prefixes = match (&self.path_prefixes, &other.path_prefixes) {
            (Some(a), Some(b)) => {
                a.iter().any(|p| b.iter().any(|q| p.starts_with(q.as_str()) || q.starts_with(p.as_str())))
            }
            _ => true,
        };
        methods && prefixes
    }
}

/// A path prefix starts with `/` and holds no spaces, `?` or `#`.
pub fn check_prefix(at: &str, prefix: &str, errors: &mut Vec<DataError>) {
    if !prefix.starts_with('/') || prefix.bytes().any(|b| b == b'?' || b == b'#' || !b.is_ascii_graphic()) {
        errors.push(DataError::new(at, format!("{prefix:?} must start with '/' and hold no spaces, '?' or '#'")));
    }
}
