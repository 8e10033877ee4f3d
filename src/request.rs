//! The request as the filter sees it: header bytes from the host, and the places in the
//! path where a version can stand. Nothing here allocates per header.

use crate::header_map::Header;

/// A request's headers as the host gives them (names lower-case, values raw bytes),
/// pseudo-headers (`:path`, `:authority`) included.
pub struct Request<'a> {
    pub headers: &'a [Header<'a>],
    /// `:path` before the `?`.
    pub path: &'a [u8],
    /// `:path` after the `?`, if there is one.
    pub query: Option<&'a [u8]>,
    /// `:authority` without the port, as sent (compare case-insensitively).
    pub host: &'a [u8],
    /// A leading `/v2` segment: the raw segment without `/`, and the path after it.
    pub leading_version: Option<PathVersion<'a>>,
    /// A trailing `_v2` on the last segment: the raw `v2`, and the path before `_v2`.
    pub suffix_version: Option<PathVersion<'a>>,
}

/// A version found in the path, and the path with it taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathVersion<'a> {
    pub raw: &'a [u8],
    /// For a leading segment: what follows it (`/register`). For a suffix: what precedes it.
    pub remainder: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a [Header<'a>]) -> Self {
        let full_path = header(headers, ":path").unwrap_or_default();
        let (path, query) = match full_path.iter().position(|b| *b == b'?') {
            Some(at) => (full_path.get(..at).unwrap_or_default(), full_path.get(at + 1..)),
            None => (full_path, None),
        };
        let authority = header(headers, ":authority").or_else(|| header(headers, "host")).unwrap_or_default();
        Request {
            headers,
            path,
            query,
            host: strip_port(authority),
            leading_version: leading_version(path),
            suffix_version: suffix_version(path),
        }
    }

    /// Every value of a header, in order (a repeated header gives several).
    pub fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers.iter().filter(move |(n, _)| *n == name.as_bytes()).map(|(_, v)| *v)
    }

    /// Whether this is a gRPC call (`content-type: application/grpc…`).
    pub fn is_grpc(&self) -> bool {
        self.first("content-type").is_some_and(|ct| ct.starts_with(b"application/grpc"))
    }

    /// The first value of a header.
    pub fn first(&self, name: &str) -> Option<&'a [u8]> {
        header(self.headers, name)
    }
}

fn header<'a>(headers: &'a [Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| *v)
}

fn strip_port(authority: &[u8]) -> &[u8] {
    // An IPv6 literal keeps its colons inside brackets.
    let colon = match authority.iter().rposition(|b| *b == b']') {
        Some(bracket) => {
            authority.get(bracket..).and_then(|tail| tail.iter().position(|b| *b == b':')).map(|c| c + bracket)
        }
        None => authority.iter().position(|b| *b == b':'),
    };
    match colon {
        Some(at) => authority.get(..at).unwrap_or(authority),
        None => authority,
    }
}

/// Whether a path piece looks like a version token: `v` or `V`, then digits and dots.
/// Whether it is a *valid* version is decided later, so `/v02/x` is a 400, not a miss.
fn is_version_token(token: &[u8]) -> bool {
    match token.split_first() {
        Some((b'v' | b'V', rest)) => {
            rest.first().is_some_and(u8::is_ascii_digit) && rest.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        }
        _ => false,
    }
}

fn leading_version(path: &[u8]) -> Option<PathVersion<'_>> {
    let after_slash = path.strip_prefix(b"/")?;
    let end = after_slash.iter().position(|b| *b == b'/').unwrap_or(after_slash.len());
    let segment = after_slash.get(..end)?;
    if !is_version_token(segment) {
        return None;
    }
    let rest = after_slash.get(end..).unwrap_or_default();
    Some(PathVersion { raw: segment, remainder: if rest.is_empty() { b"/" } else { rest } })
}

fn suffix_version(path: &[u8]) -> Option<PathVersion<'_>> {
    let segment_start = path.iter().rposition(|b| *b == b'/').map_or(0, |at| at + 1);
    let segment = path.get(segment_start..)?;
    let underscore = segment.iter().rposition(|b| *b == b'_')?;
    let raw = segment.get(underscore + 1..)?;
    // `/_v2` has no name left to version; leave it alone.
    if underscore == 0 || !is_version_token(raw) {
        return None;
    }
    Some(PathVersion { raw, remainder: path.get(..segment_start + underscore)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Vec<Header<'_>> {
        vec![(b":path", path.as_bytes()), (b":authority", b"User.Example:10000")]
    }

    #[test]
    fn finds_versions_in_the_path() {
        type Case<'c> = (&'c str, &'c str, Option<&'c str>, Option<(&'c str, &'c str)>, Option<(&'c str, &'c str)>);
        let cases: &[Case] = &[
            ("/register", "/register", None, None, None),
            ("/v2/register", "/v2/register", None, Some(("v2", "/register")), None),
            ("/V2.1/register?x=1", "/V2.1/register", Some("x=1"), Some(("V2.1", "/register")), None),
            ("/v2", "/v2", None, Some(("v2", "/")), None),
            ("/v02/register", "/v02/register", None, Some(("v02", "/register")), None),
            ("/v8engine/x", "/v8engine/x", None, None, None),
            ("/register_v2", "/register_v2", None, None, Some(("v2", "/register"))),
            ("/a/b/register_v2.1?q", "/a/b/register_v2.1", Some("q"), None, Some(("v2.1", "/a/b/register"))),
            ("/v2/register_v2", "/v2/register_v2", None, Some(("v2", "/register_v2")), Some(("v2", "/v2/register"))),
            ("/_v2", "/_v2", None, None, None),
            ("/my_var", "/my_var", None, None, None),
            ("", "", None, None, None),
            ("*", "*", None, None, None),
            ("?", "", Some(""), None, None),
        ];
        for (full, path, query, leading, suffix) in cases {
            let headers = request(full);
            let r = Request::new(&headers);
            assert_eq!(r.path, path.as_bytes(), "{full}");
            assert_eq!(r.query, query.map(str::as_bytes), "{full}");
            let pv = |p: Option<(&str, &str)>| p.map(|(raw, rem)| (raw.as_bytes().to_vec(), rem.as_bytes().to_vec()));
            assert_eq!(r.leading_version.map(|v| (v.raw.to_vec(), v.remainder.to_vec())), pv(*leading), "{full}");
            assert_eq!(r.suffix_version.map(|v| (v.raw.to_vec(), v.remainder.to_vec())), pv(*suffix), "{full}");
        }
    }

    #[test]
    fn strips_the_port_from_the_host() {
        for (authority, host) in
            [("a.b:80", "a.b"), ("a.b", "a.b"), ("[::1]:8080", "[::1]"), ("[::1]", "[::1]"), ("", "")]
        {
            let headers: Vec<Header> = vec![(b":authority", authority.as_bytes())];
            assert_eq!(Request::new(&headers).host, host.as_bytes());
        }
    }
}
