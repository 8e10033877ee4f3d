//! The checks behind meshver's fuzz targets. Each module is one target: a `check(data)` that
//! hands arbitrary bytes to one parser or engine of the filter and panics when an invariant
//! breaks (a panic in the filter itself is a crash too). cargo-fuzz's entry points
//! (fuzz_targets/) call them under libFuzzer (`make fuzz`); the stable short run
//! (tests/short_run.rs, part of `make test`) calls them on the seeds (seeds/<target>/) and
//! on mutations of them.

pub mod accept;
pub mod body;
pub mod config;
pub mod contract;
pub mod header_map;
pub mod rewrite;
pub mod version;

mod fixtures;
mod plan;

/// A target's check: panics on a crash or a broken invariant.
pub type Check = fn(&[u8]);

/// Every target: its name (a file in fuzz_targets/, a folder in seeds/) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("version", version::check),
    ("accept", accept::check),
    ("header_map", header_map::check),
    ("rewrite", rewrite::check),
    ("config", config::check),
    ("body", body::check),
    ("contract", contract::check),
];

/// Whether `part` is a slice of `whole` (the parsers hand out borrowed pieces of their input).
fn is_within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let at = part.as_ptr() as usize;
    part.is_empty() || (start <= at && at + part.len() <= end)
}

/// Header pairs from lines of `name:value` (`:path` and the like keep their colon); a line
/// without a colon after its first byte is skipped. Names are lower-cased, as the host hands them.
fn header_lines(text: &[u8]) -> Vec<(Vec<u8>, &[u8])> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let at = line.iter().skip(1).position(|b| *b == b':')? + 1;
            let (name, value) = (line.get(..at)?, line.get(at + 1..)?);
            Some((name.to_ascii_lowercase(), value.strip_prefix(b" ").unwrap_or(value)))
        })
        .collect()
}
