//! Sticky canary assignment: a client's key is hashed to a stable bucket that Envoy's
//! `weighted_clusters.header_name` uses instead of a random number.
//!
//! Envoy picks a cluster by `value mod total_weight`, clusters in listed order. With the
//! newest deployment listed first, a client whose bucket is below the new weight stays on
//! it as that weight only grows: rollouts move clients from old to new, never back.

use crate::request::Request;
use xxhash_rust::xxh3::xxh3_64;

/// Header the filter writes the bucket into (read by the weighted route as `header_name`).
pub const STICKY_HEADER: &str = "x-meshver-sticky";
/// Buckets are `0..BUCKETS`, written as four digits; `mod 100` of them is uniform, and the
/// last two digits are the bucket of a 100-weight split (what Istio routes can match on).
pub const BUCKETS: u64 = 10_000;

/// Where the client key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(String),
    Cookie(String),
}

impl StickyKey {
    /// The client's key in this request, if it sent one.
    pub fn find<'a>(&self, request: &Request<'a>) -> Option<&'a [u8]> {
        match self {
            StickyKey::Header(name) => request.first(name).filter(|v| !v.trim_ascii().is_empty()),
            StickyKey::Cookie(name) => request.values("cookie").find_map(|header| cookie(header, name)),
        }
    }
}

/// The stable bucket of a key, as the four-digit header value.
pub fn bucket(key: &[u8]) -> String {
    format!("{:04}", xxh3_64(key.trim_ascii()) % BUCKETS)
}

/// A cookie's value from one `Cookie` header (`a=1; session=abc`).
fn cookie<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let at = pair.iter().position(|b| *b == b'=')?;
        (pair.get(..at)? == name.as_bytes()).then(|| pair.get(at + 1..)).flatten().filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_from_headers_and_cookies() {
        let headers: Vec<(&[u8], &[u8])> =
            vec![(b"x-user-id", b"42"), (b"cookie", b"a=1; session=abc"), (b"cookie", b"other=2")];
        let r = Request::new(&headers);
        assert_eq!(StickyKey::Header("x-user-id".into()).find(&r), Some(&b"42"[..]));
        assert_eq!(StickyKey::Header("x-none".into()).find(&r), None);
        assert_eq!(StickyKey::Cookie("session".into()).find(&r), Some(&b"abc"[..]));
        assert_eq!(StickyKey::Cookie("other".into()).find(&r), Some(&b"2"[..]));
        assert_eq!(StickyKey::Cookie("sess".into()).find(&r), None);
    }

    #[test]
    fn buckets_are_stable_and_even() {
        assert_eq!(bucket(b"user-1"), bucket(b"user-1"));
        assert_eq!(bucket(b"user-1").len(), 4);
        // 100,000 sequential keys over 100 buckets: each within 15% of the mean of 1,000.
        let mut counts = [0u32; 100];
        for i in 0..100_000 {
            let b: usize = bucket(format!("user-{i}").as_bytes()).parse().unwrap();
            counts[b % 100] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "min {min} max {max}");
    }
}
