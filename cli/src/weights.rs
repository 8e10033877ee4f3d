//! Weight arithmetic for a line: every result sums to 100.

/// Gives `target` the weight `weight` and shares the rest (100 - weight) among the other
/// deployments in proportion to their `current` weights (largest remainder, ties to the
/// lower index). If the others all have 0, they share the rest evenly.
pub fn shift(current: &[u32], target: usize, weight: u32) -> Vec<u32> {
    let weight = weight.min(100);
    let rest = 100 - weight;
    let others: Vec<usize> = (0..current.len()).filter(|i| *i != target).collect();
    let mut result = vec![0; current.len()];
    if let Some(slot) = result.get_mut(target) {
        *slot = weight;
    }
    if others.is_empty() {
        // A line of one: it takes everything whatever was asked.
        if let Some(slot) = result.get_mut(target) {
            *slot = 100;
        }
        return result;
    }
    let basis: Vec<u64> = {
        let given: Vec<u64> = others.iter().map(|i| u64::from(current.get(*i).copied().unwrap_or(0))).collect();
        if given.iter().all(|w| *w == 0) {
            vec![1; others.len()]
        } else {
            given
        }
    };
    let total: u64 = basis.iter().sum();
    let mut shares: Vec<(usize, u64, u64)> = others
        .iter()
        .zip(&basis)
        .map(|(i, b)| (*i, u64::from(rest) * b / total, u64::from(rest) * b % total))
        .collect();
    let mut left = u64::from(rest) - shares.iter().map(|s| s.1).sum::<u64>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|a, b| {
        let (ra, rb) = (shares.get(*a).map_or(0, |s| s.2), shares.get(*b).map_or(0, |s| s.2));
        rb.cmp(&ra).then(a.cmp(b))
    });
    for k in order {
        if left == 0 {
            break;
        }
        if let Some(share) = shares.get_mut(k) {
            share.1 += 1;
            left -= 1;
        }
    }
    for (i, share, _) in shares {
        if let Some(slot) = result.get_mut(i) {
            *slot = share as u32;
        }
    }
    result
}

/// All of a line's weight on one deployment.
pub fn all_on(count: usize, index: usize) -> Vec<u32> {
    (0..count).map(|i| if i == index { 100 } else { 0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_two_gets_the_complement() {
        assert_eq!(shift(&[90, 10], 1, 25), [75, 25]);
        assert_eq!(shift(&[0, 100], 0, 100), [100, 0]);
        assert_eq!(shift(&[100, 0], 1, 0), [100, 0]);
    }

    #[test]
    fn larger_lines_share_the_rest_in_proportion() {
        assert_eq!(shift(&[60, 30, 10], 2, 50), [33, 17, 50]);
        assert_eq!(shift(&[50, 50, 0], 2, 10), [45, 45, 10]);
        assert_eq!(shift(&[0, 0, 100], 2, 40), [30, 30, 40]);
        assert_eq!(shift(&[1, 1, 1, 97], 3, 0), [34, 33, 33, 0]);
    }

    #[test]
    fn every_shift_sums_to_100() {
        for a in 0..=100u32 {
            for w in (0..=100).step_by(7) {
                let current = [a, 100 - a, a / 3];
                for target in 0..3 {
                    let result = shift(&current, target, w);
                    assert_eq!(result.iter().sum::<u32>(), 100, "{current:?} {target} {w}");
                    assert_eq!(result[target], w);
                }
            }
        }
        assert_eq!(shift(&[7], 0, 30), [100]);
        assert_eq!(all_on(3, 1), [0, 100, 0]);
    }
}
