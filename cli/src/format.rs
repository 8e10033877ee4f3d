//! How the CLI writes numbers for people: percentages and latencies.

/// `0.38` → `38.0%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// `312.0` → `312ms`, `1500.0` → `1.50s`.
pub fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.0}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_latencies() {
        assert_eq!(percent(0.38), "38.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(millis(312.0), "312ms");
        assert_eq!(millis(1500.0), "1.50s");
    }
}
