//! Where a requested version comes from: a header, the path (`/v2/x`), a path suffix
//! (`/x_v2`), the Accept header, a query parameter, or a gRPC package (`/acme.user.v2.S/M`).

use serde::Deserialize;

/// A version source, as named in the configuration's `sources` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Header,
    Path,
    Suffix,
    Accept,
    Query,
    Grpc,
}

impl Source {
    /// Every source, in the default precedence order.
    pub const ALL: [Source; 6] =
        [Source::Header, Source::Path, Source::Suffix, Source::Accept, Source::Query, Source::Grpc];

    /// The name used in the configuration and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Path => "path",
            Source::Suffix => "suffix",
            Source::Accept => "accept",
            Source::Query => "query",
            Source::Grpc => "grpc",
        }
    }
}

/// Values of a query parameter, raw (a percent-encoded value does not parse as a version).
pub fn query_values<'a, 'n>(query: Option<&'a [u8]>, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
where
    'a: 'n,
{
    query_pairs(query.unwrap_or_default()).filter(move |(key, _)| *key == name.as_bytes()).map(|(_, value)| value)
}

/// The query string's `key=value` pairs; a pair without `=` has an empty value.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|b| *b == b'&').filter(|pair| !pair.is_empty()).map(|pair| match pair.iter().position(|b| *b == b'=') {
        Some(at) => (pair.get(..at).unwrap_or_default(), pair.get(at + 1..).unwrap_or_default()),
        None => (pair, &[][..]),
    })
}

/// Versions named in one Accept header value: `application/json; version=2` or
/// `application/vnd.<vendor>.v2+json`, in any of its comma-separated media ranges.
pub fn accept_versions<'a: 'v, 'v>(value: &'a [u8], vendor: Option<&'v str>) -> impl Iterator<Item = &'a [u8]> + 'v {
    value.split(|b| *b == b',').flat_map(move |range| {
        let mut parts = range.split(|b| *b == b';');
        let media_type = parts.next().unwrap_or_default().trim_ascii();
        let from_type = vendor_version(media_type, vendor);
        let from_params = parts.filter_map(|param| {
            let param = param.trim_ascii();
            let at = param.iter().position(|b| *b == b'=')?;
            let (name, value) = (param.get(..at)?.trim_ascii(), param.get(at + 1..)?.trim_ascii());
            let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
            name.eq_ignore_ascii_case(b"version").then_some(value)
        });
        from_type.into_iter().chain(from_params)
    })
}

/// `application/vnd.acme.v2+json` → `v2` (when the vendor matches, or any vendor if none is set).
fn vendor_version<'a>(media_type: &'a [u8], vendor: Option<&str>) -> Option<&'a [u8]> {
    let slash = media_type.iter().position(|b| *b == b'/')?;
    let subtype = media_type.get(slash + 1..)?.strip_prefix(b"vnd.")?;
    let end = subtype.iter().position(|b| *b == b'+').unwrap_or(subtype.len());
    let name = subtype.get(..end)?;
    // The version is the first `.v<digit>` label; the vendor is what precedes it.
    let at = name.windows(3).position(|w| matches!(w, [b'.', b'v' | b'V', d] if d.is_ascii_digit()))?;
    let found_vendor = name.get(..at)?;
    if vendor.is_some_and(|v| !found_vendor.eq_ignore_ascii_case(v.as_bytes())) {
        return None;
    }
    name.get(at + 1..)
}

/// `/acme.user.v2.UserService/Register` → `v2`: the package label that is `v` and digits.
pub fn grpc_package_version(path: &[u8]) -> Option<&[u8]> {
    let rest = path.strip_prefix(b"/")?;
    let service = rest.get(..rest.iter().position(|b| *b == b'/')?)?;
    service.split(|b| *b == b'.').find(|label| {
        matches!(label.split_first(), Some((b'v' | b'V', digits)) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings<'a>(it: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
        it.map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn reads_accept_forms() {
        let cases: &[(&str, Option<&str>, &[&str])] = &[
            ("application/json; version=2", None, &["2"]),
            ("application/json;version=\"2.1\"", None, &["2.1"]),
            ("application/json; Version = v2 ; q=0.9", None, &["v2"]),
            ("application/vnd.acme.v2+json", None, &["v2"]),
            ("application/vnd.acme.v2.1+json", Some("acme"), &["v2.1"]),
            ("application/vnd.other.v2+json", Some("acme"), &[]),
            ("application/vnd.github.v3+json, application/json; version=3", None, &["v3", "3"]),
            ("application/vnd.acme.user+json", None, &[]),
            ("application/json", None, &[]),
            ("*/*", None, &[]),
            ("", None, &[]),
            ("application/json; version=", None, &[""]),
        ];
        for (value, vendor, want) in cases {
            assert_eq!(strings(accept_versions(value.as_bytes(), *vendor)), *want, "{value}");
        }
    }

    #[test]
    fn reads_query_parameters() {
        let cases: &[(&str, &[&str])] = &[
            ("api-version=2", &["2"]),
            ("a=1&api-version=2.1&b", &["2.1"]),
            ("api-version=2&api-version=3", &["2", "3"]),
            ("api-version", &[""]),
            ("xapi-version=2", &[]),
            ("", &[]),
        ];
        for (query, want) in cases {
            assert_eq!(strings(query_values(Some(query.as_bytes()), "api-version")), *want, "{query}");
        }
    }

    #[test]
    fn reads_grpc_packages() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/acme.user.v2.UserService/Register", Some("v2")),
            ("/acme.user.V10.UserService/Register", Some("V10")),
            ("/acme.user.UserService/Register", None),
            ("/acme.user.v2beta.UserService/Register", None),
            ("/register", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                grpc_package_version(path.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()),
                want.map(str::to_owned),
                "{path}"
            );
        }
    }
}
