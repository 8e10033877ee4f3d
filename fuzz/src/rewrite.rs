//! Path and query rewriting: the input's first line is the `:path`, the lines after it
//! request headers (`name: value`). The request is decided at the demo's edge and over a
//! catalog that matches every path; a rewritten path only ever loses the version's path
//! segment, suffix and query parameter. Query values decode as servers decode them.

use super::fixtures::{catch_all, demo};
use super::plan::{borrowed, decided};
use meshver::config::Catalog;
use meshver::resolve::Outcome;
use meshver::sources::{names_param, percent_decode, query_pairs};

pub fn check(data: &[u8]) {
    let (path, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (data.get(..at).unwrap_or_default(), data.get(at + 1..).unwrap_or_default()),
        None => (data, &[][..]),
    };
    let mut owned = vec![(b":method".to_vec(), &b"GET"[..]), (b":path".to_vec(), path)];
    owned.extend(super::header_lines(rest).into_iter().filter(|(name, _)| name != b":path"));
    let headers = borrowed(&owned);
    for catalog in [demo(), catch_all()] {
        if let Outcome::Forward(forward) = &decided(catalog, &headers).outcome {
            if let Some(new) = &forward.path {
                check_rewrite(catalog, path, new);
            }
        }
    }
    let query = path.iter().position(|b| *b == b'?').and_then(|at| path.get(at + 1..)).unwrap_or_default();
    for (key, value) in query_pairs(query) {
        for raw in [key, value] {
            if let Ok(decoded) = percent_decode(raw) {
                assert!(decoded.len() <= raw.len());
                assert_eq!(percent_decode(&percent_encode(&decoded)).as_deref(), Ok(&decoded[..]));
            }
        }
    }
}

/// A rewritten `:path` is the path as sent with the version's segment or suffix cut (or `/`
/// when nothing is left), and the query as sent without the version's parameter.
fn check_rewrite(catalog: &Catalog, sent: &[u8], new: &[u8]) {
    let shown = || format!("{:?} → {:?}", String::from_utf8_lossy(sent), String::from_utf8_lossy(new));
    let split = |p: &'_ [u8]| -> (Vec<u8>, Option<Vec<u8>>) {
        match p.iter().position(|b| *b == b'?') {
            Some(at) => (p.get(..at).unwrap_or_default().to_vec(), p.get(at + 1..).map(<[u8]>::to_vec)),
            None => (p.to_vec(), None),
        }
    };
    let ((sent_path, sent_query), (new_path, new_query)) = (split(sent), split(new));
    assert!(
        new_path == b"/" || sent_path.windows(new_path.len().max(1)).any(|w| w == new_path.as_slice()),
        "{}",
        shown()
    );
    let params: Vec<&str> = catalog.services.iter().map(|s| s.query_param.as_str()).collect();
    let sent_pairs: Vec<&[u8]> = sent_query.as_deref().unwrap_or_default().split(|b| *b == b'&').collect();
    let mut kept = new_query.as_deref().unwrap_or_default().split(|b| *b == b'&').filter(|p| !p.is_empty()).peekable();
    for pair in sent_pairs {
        if kept.peek() == Some(&pair) {
            kept.next();
        } else {
            // Only a pair naming the version's parameter (or an empty one) may go.
            let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
            assert!(pair.is_empty() || params.iter().any(|p| names_param(key, p)), "{}", shown());
        }
    }
    assert_eq!(kept.next(), None, "{}", shown());
}

/// Every byte as `%XX`: the most a client can escape.
fn percent_encode(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|b| format!("%{b:02X}").into_bytes()).collect()
}
