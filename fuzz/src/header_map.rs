//! The header-map reader: the bytes the host hands over as a request's headers, then the
//! whole decision on what it read, at each of the demo's listeners and over the catalog with
//! body changes.

use super::fixtures::{demo_listeners, served};
use super::plan::decided;
use meshver::header_map::{parse, serialise};

pub fn check(data: &[u8]) {
    let Some(headers) = parse(data) else { return };
    // What it read is what the host's side of the format writes back, read the same way.
    let written = serialise(&headers);
    assert!(written.len() <= data.len() || data.is_empty());
    assert_eq!(parse(&written).as_deref(), Some(headers.as_slice()));
    for catalog in demo_listeners().into_iter().chain([served()]) {
        decided(catalog, &headers);
    }
}
