//! Where a requested version comes from: a header, the path (`/v2/x`), a path suffix
//! (`/x_v2`), the Accept header, a query parameter, or a gRPC package (`/acme.user.v2.S/M`).
//!
//! Query strings and Accept headers are read as servers and HTTP libraries write them:
//! query keys and values are percent-decoded, and every media range of an Accept header
//! carries its weight (`q`), so that resolution can pick the client's preferred version.

use serde::Deserialize;
use std::borrow::Cow;

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

/// Values of a query parameter, as sent (decode each with [`percent_decode`]). A key names
/// the parameter when it decodes to its name (`api%2Dversion` is `api-version`).
pub fn query_values<'a, 'n>(query: Option<&'a [u8]>, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
where
    'a: 'n,
{
    query_pairs(query.unwrap_or_default()).filter(move |(key, _)| names_param(key, name)).map(|(_, value)| value)
}

/// Whether a query key, as sent, decodes to `name`. A key that cannot be decoded names nothing.
pub fn names_param(key: &[u8], name: &str) -> bool {
    percent_decode(key).is_ok_and(|key| *key == *name.as_bytes())
}

/// The query string's `key=value` pairs; a pair without `=` has an empty value.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|b| *b == b'&').filter(|pair| !pair.is_empty()).map(|pair| match pair.iter().position(|b| *b == b'=') {
        Some(at) => (pair.get(..at).unwrap_or_default(), pair.get(at + 1..).unwrap_or_default()),
        None => (pair, &[][..]),
    })
}

/// A `%` in a query key or value that two hex digits do not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape {
    /// Where the `%` stands in the bytes as sent.
    pub at: usize,
}

impl BadEscape {
    /// The escape as sent: the `%` and up to two bytes after it.
    pub fn text(self, raw: &[u8]) -> &[u8] {
        raw.get(self.at..).map_or(&[][..], |rest| rest.get(..3).unwrap_or(rest))
    }
}

/// A query key or value as the upstream's framework reads it (the `application/x-www-form-
/// urlencoded` rules that Go's `url.ParseQuery`, Python's `parse_qs`, Java servlets and
/// `URLSearchParams` apply to query strings): `%XX` is the byte `XX`, `+` is a space, and
/// `%2B` is a plus. Borrowed when there is nothing to decode. A `%` without two hex digits
/// after it is an error rather than a literal, so that a value never means two things.
pub fn percent_decode(raw: &[u8]) -> Result<Cow<'_, [u8]>, BadEscape> {
    if !raw.iter().any(|b| matches!(b, b'%' | b'+')) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(&byte) = raw.get(at) {
        match byte {
            b'%' => {
                let hex = |offset: usize| raw.get(at + offset).and_then(|b| char::from(*b).to_digit(16));
                let (Some(high), Some(low)) = (hex(1), hex(2)) else {
                    return Err(BadEscape { at });
                };
                // Two hex digits are below 256: the cast cannot truncate.
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// The heaviest weight, `q=1`, in thousandths; every source but Accept speaks with it.
pub const FULL_WEIGHT: u16 = 1000;

/// A version named by one media range of an Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedVersion<'a> {
    /// The version as written: `v2` from `application/vnd.acme.v2+json`, `2.1` from `version=2.1`.
    pub raw: &'a [u8],
    /// The range's weight in thousandths (`q=0.5` is 500; no `q` is [`FULL_WEIGHT`]), or the
    /// weight as sent when it is not an RFC 9110 q-value.
    pub weight: Result<u16, &'a [u8]>,
}

/// Versions named in one Accept header value: `application/json; version=2` or
/// `application/vnd.<vendor>.v2+json`, in any of its comma-separated media ranges, in order,
/// each with its range's weight. Ranges that name no version (`*/*`, `text/html`) are left
/// out, whatever their weight. Commas and semicolons inside quoted strings separate nothing.
pub fn accept_versions<'a: 'v, 'v>(
    value: &'a [u8],
    vendor: Option<&'v str>,
) -> impl Iterator<Item = AcceptedVersion<'a>> + 'v {
    split_unquoted(value, b',').flat_map(move |range| {
        let media_type = split_unquoted(range, b';').next().unwrap_or_default().trim_ascii();
        let from_type = vendor_version(media_type, vendor);
        let params = move || split_unquoted(range, b';').skip(1).filter_map(parameter);
        // The first `q` is the weight (RFC 9110 §12.4.2); parameter names ignore case.
        let weight = params()
            .find(|(name, _)| name.eq_ignore_ascii_case(b"q"))
            .map_or(Ok(FULL_WEIGHT), |(_, q)| parse_qvalue(q).ok_or(q));
        let from_params = params().filter(|(name, _)| name.eq_ignore_ascii_case(b"version")).map(|(_, v)| v);
        from_type.into_iter().chain(from_params).map(move |raw| AcceptedVersion { raw, weight })
    })
}

/// An RFC 9110 §12.4.2 q-value in thousandths: `0`, `0.`, `0.5`, `0.125`, `1`, `1.0`, `1.000`.
/// Anything else (`.5`, `0.1234`, `1.5`, `-1`, `high`) is `None`.
pub fn parse_qvalue(raw: &[u8]) -> Option<u16> {
    let (whole, fraction) = match raw.iter().position(|b| *b == b'.') {
        Some(dot) => (raw.get(..dot)?, raw.get(dot + 1..)?),
        None => (raw, &[][..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction.iter().chain(b"000").take(3).fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(FULL_WEIGHT),
        _ => None,
    }
}

/// A parameter `name=value`, both trimmed, a quoted value without its quotes.
fn parameter(param: &[u8]) -> Option<(&[u8], &[u8])> {
    let param = param.trim_ascii();
    let at = param.iter().position(|b| *b == b'=')?;
    let (name, value) = (param.get(..at)?.trim_ascii(), param.get(at + 1..)?.trim_ascii());
    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    Some((name, value))
}

/// `bytes` split at each `separator` outside a quoted string (RFC 9110 §5.6.4: `"…"`, in
/// which `\` escapes the next byte).
fn split_unquoted(bytes: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    let (mut quoted, mut escaped) = (false, false);
    bytes.split(move |b| {
        if escaped {
            escaped = false;
            return false;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => return !quoted && *b == separator,
        }
        false
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

    /// `version@weight` for each version an Accept value names; a weight that is no q-value
    /// shows as sent, quoted.
    fn accepted(value: &str, vendor: Option<&str>) -> Vec<String> {
        accept_versions(value.as_bytes(), vendor)
            .map(|a| {
                let weight =
                    a.weight.map_or_else(|raw| format!("{:?}", String::from_utf8_lossy(raw)), |w| w.to_string());
                format!("{}@{weight}", String::from_utf8_lossy(a.raw))
            })
            .collect()
    }

    #[test]
    fn reads_accept_forms() {
        let cases: &[(&str, Option<&str>, &[&str])] = &[
            ("application/json; version=2", None, &["2@1000"]),
            ("application/json;version=\"2.1\"", None, &["2.1@1000"]),
            ("application/json; Version = v2 ; q=0.9", None, &["v2@900"]),
            ("application/vnd.acme.v2+json", None, &["v2@1000"]),
            ("application/vnd.acme.v2.1+json", Some("acme"), &["v2.1@1000"]),
            ("application/vnd.other.v2+json", Some("acme"), &[]),
            ("application/vnd.github.v3+json, application/json; version=3", None, &["v3@1000", "3@1000"]),
            ("application/vnd.acme.user+json", None, &[]),
            ("application/json", None, &[]),
            ("*/*", None, &[]),
            ("", None, &[]),
            ("application/json; version=", None, &["@1000"]),
            // As libraries and people write them: weights in any case and place, spaces.
            ("application/vnd.acme.v2+json; q=0.5, application/vnd.acme.v1+json", None, &["v2@500", "v1@1000"]),
            ("application/vnd.acme.v1+json;Q=0,application/vnd.acme.v2+json;q=1.000", None, &["v1@0", "v2@1000"]),
            ("application/json;q=0.25;version=2", None, &["2@250"]),
            // A browser's Accept names no version, whatever its weights.
            ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, &[]),
            ("*/*;q=high", None, &[]),
            // A weight that is no q-value is kept as sent, for the answer to name it.
            ("application/vnd.acme.v2+json;q=.5", None, &["v2@\".5\""]),
            ("application/vnd.acme.v2+json;q=0.5;q=x", None, &["v2@500"]),
            // Quoted strings: their commas and semicolons separate nothing.
            ("application/json; note=\"a, b; c\"; version=2", None, &["2@1000"]),
            ("application/json; note=\"a\\\", b\"; version=2, */*", None, &["2@1000"]),
            ("application/json; version=\"2, 3\"", None, &["2, 3@1000"]),
        ];
        for (value, vendor, want) in cases {
            assert_eq!(accepted(value, *vendor), *want, "{value}");
        }
    }

    #[test]
    fn reads_rfc_9110_qvalues() {
        let cases: &[(&str, Option<u16>)] = &[
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.125", Some(125)),
            ("0.001", Some(1)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.1234", None),
            (".5", None),
            ("1.5", None),
            ("2", None),
            ("-0", None),
            ("00.5", None),
            ("0,5", None),
            ("", None),
            ("high", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_qvalue(raw.as_bytes()), *want, "{raw}");
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
            // Keys are compared decoded; values come as sent.
            ("api%2Dversion=2%2E1", &["2%2E1"]),
            ("api%2dversion=2&api-version%=3", &["2"]),
        ];
        for (query, want) in cases {
            assert_eq!(strings(query_values(Some(query.as_bytes()), "api-version")), *want, "{query}");
        }
    }

    #[test]
    fn decodes_query_values_as_servers_do() {
        let decoded = |raw: &str| percent_decode(raw.as_bytes()).map(|d| String::from_utf8_lossy(&d).into_owned());
        let cases: &[(&str, Result<&str, usize>)] = &[
            ("2.1", Ok("2.1")),
            ("2%2E1", Ok("2.1")),
            ("2%2e1", Ok("2.1")),
            ("%76%32", Ok("v2")),
            ("+2.1+", Ok(" 2.1 ")),
            ("2%2B1", Ok("2+1")),
            ("%25", Ok("%")),
            ("", Ok("")),
            ("2%", Err(1)),
            ("2%2", Err(1)),
            ("2%G1", Err(1)),
            ("%2E%zz", Err(3)),
            ("%%41", Err(0)),
        ];
        for (raw, want) in cases {
            assert_eq!(decoded(raw).map_err(|e| e.at), want.map(str::to_owned), "{raw}");
        }
        assert!(matches!(percent_decode(b"2.1"), Ok(Cow::Borrowed(_))), "nothing to decode, nothing copied");
        assert_eq!(BadEscape { at: 1 }.text(b"2%G1"), b"%G1");
        assert_eq!(BadEscape { at: 1 }.text(b"2%"), b"%");
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
