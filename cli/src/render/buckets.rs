//! Sticky buckets for Istio: the filter writes a client's stable number as 4 zero-padded
//! digits in `x-meshver-sticky`; its value mod 100 (the last two digits) is the bucket.
//! Envoy's `weighted_clusters.header_name` does this arithmetic itself; Istio cannot, so
//! the VirtualService matches bucket ranges with a regex on the last two digits.

/// An RE2 regex matching the whole header value when its last two digits are in `lo..hi`
/// (0 ≤ lo ≤ hi ≤ 100); `None` when the range is empty.
pub fn bucket_regex(lo: u32, hi: u32) -> Option<String> {
    let hi = hi.min(100);
    if lo >= hi {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    // Runs of whole tens (x0..x9) become one class `[a-b][0-9]`.
    let mut whole_tens: Option<(u32, u32)> = None;
    let flush = |run: &mut Option<(u32, u32)>, parts: &mut Vec<String>| {
        if let Some((a, b)) = run.take() {
            parts.push(if a == b { format!("{a}[0-9]") } else { format!("[{a}-{b}][0-9]") });
        }
    };
    for tens in 0..10 {
        let first = lo.max(tens * 10);
        let last = (hi - 1).min(tens * 10 + 9);
        if first > last {
            continue;
        }
        let (u1, u2) = (first % 10, last % 10);
        if u1 == 0 && u2 == 9 {
            whole_tens = Some(whole_tens.map_or((tens, tens), |(a, _)| (a, tens)));
            continue;
        }
        flush(&mut whole_tens, &mut parts);
        parts.push(match u2 - u1 {
            0 => format!("{tens}{u1}"),
            _ => format!("{tens}[{u1}-{u2}]"),
        });
    }
    flush(&mut whole_tens, &mut parts);
    Some(format!("^[0-9]*(?:{})$", parts.join("|")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_read_as_expected() {
        assert_eq!(bucket_regex(0, 0), None);
        assert_eq!(bucket_regex(0, 1).unwrap(), "^[0-9]*(?:00)$");
        assert_eq!(bucket_regex(0, 15).unwrap(), "^[0-9]*(?:0[0-9]|1[0-4])$");
        assert_eq!(bucket_regex(0, 30).unwrap(), "^[0-9]*(?:[0-2][0-9])$");
        assert_eq!(bucket_regex(0, 100).unwrap(), "^[0-9]*(?:[0-9][0-9])$");
        assert_eq!(bucket_regex(10, 100).unwrap(), "^[0-9]*(?:[1-9][0-9])$");
        assert_eq!(bucket_regex(37, 62).unwrap(), "^[0-9]*(?:3[7-9]|[4-5][0-9]|6[0-1])$");
    }

    /// Every range against every 4-digit value's bucket, with a real regex engine.
    #[test]
    fn every_range_matches_exactly_its_buckets() {
        for lo in 0..=100u32 {
            for hi in lo..=100u32 {
                let Some(pattern) = bucket_regex(lo, hi) else {
                    assert_eq!(lo, hi);
                    continue;
                };
                let re = regex::Regex::new(&pattern).unwrap();
                for value in (0..10_000u32).step_by(37).chain(0..100) {
                    let text = format!("{value:04}");
                    let bucket = value % 100;
                    assert_eq!(re.is_match(&text), (lo..hi).contains(&bucket), "{pattern} on {text}");
                }
            }
        }
    }
}
