//! Requested versions: what a client wrote (`2`, `v2`, `V2`, `2.1`, `2.1.3`) and the
//! semver range it stands for.

use semver::{Comparator, Op, Prerelease, Version};
use std::fmt;

/// The longest raw value we try to parse; anything longer is malformed without a look.
const MAX_RAW_LEN: usize = 32;

/// A version named by a request: a major, optionally a minor and a patch.
///
/// It stands for the caret range of semver (`2.1` → `>=2.1.0, <3.0.0`): a deployment
/// serves it when it has the same major and is at least as new. For `0.x` the caret
/// rules of Cargo apply (`0.3` → `>=0.3.0, <0.4.0`), since 0.x minors may break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedVersion {
    pub major: u64,
    pub minor: Option<u64>,
    pub patch: Option<u64>,
}

/// Why a raw value is not a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    Empty,
    TooLong,
    Invalid,
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionError::Empty => "the version is empty",
            VersionError::TooLong => "the version is too long",
            VersionError::Invalid => "expected MAJOR, MAJOR.MINOR or MAJOR.MINOR.PATCH, optionally prefixed with v",
        })
    }
}

impl RequestedVersion {
    /// Parses a raw value as sent: surrounding whitespace and one leading `v`/`V` are
    /// allowed; components are decimal numbers without leading zeros.
    pub fn parse(raw: &[u8]) -> Result<Self, VersionError> {
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(VersionError::Empty);
        }
        if trimmed.len() > MAX_RAW_LEN {
            return Err(VersionError::TooLong);
        }
        let digits = match trimmed.split_first() {
            Some((b'v' | b'V', rest)) => rest,
            _ => trimmed,
        };
        Self::parse_numeric(digits).ok_or(VersionError::Invalid)
    }

    /// Parses `MAJOR[.MINOR[.PATCH]]` with no prefix and no whitespace.
    fn parse_numeric(text: &[u8]) -> Option<Self> {
        let mut numbers = [None; 3];
        for (i, part) in text.split(|b| *b == b'.').enumerate() {
            *numbers.get_mut(i)? = Some(parse_component(part)?);
        }
        let [major, minor, patch] = numbers;
        Some(RequestedVersion { major: major?, minor, patch })
    }

    /// Parses a configured version (a string in the catalog), with the same rules.
    pub fn parse_str(raw: &str) -> Result<Self, VersionError> {
        Self::parse(raw.as_bytes())
    }

    /// The semver range this request stands for.
    pub fn comparator(&self) -> Comparator {
        Comparator { op: Op::Caret, major: self.major, minor: self.minor, patch: self.patch, pre: Prerelease::EMPTY }
    }

    /// Whether a deployment of `version` can serve this request.
    pub fn is_served_by(&self, version: &Version) -> bool {
        self.comparator().matches(version)
    }

    /// Two requests agree when they stand for the same range (`2` and `2.0.0` do).
    pub fn same_range(&self, other: &RequestedVersion) -> bool {
        let zeroed = |v: &RequestedVersion| (v.major, v.minor.unwrap_or(0), v.patch.unwrap_or(0));
        // `0` and `0.0` differ under caret rules for 0.x, so only fill zeros from major 1 on.
        if self.major == 0 || other.major == 0 {
            return self == other;
        }
        zeroed(self) == zeroed(other)
    }
}

/// A version component: 1 to 9 decimal digits, no leading zero unless it is `0`.
fn parse_component(text: &[u8]) -> Option<u64> {
    let valid = !text.is_empty()
        && text.len() <= 9
        && text.iter().all(u8::is_ascii_digit)
        && !(text.len() > 1 && text.first() == Some(&b'0'));
    if !valid {
        return None;
    }
    text.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The normalised form the upstream sees in the version header: `v2` → `2`, ` 2.1 ` → `2.1`.
impl fmt::Display for RequestedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.major)?;
        if let Some(minor) = self.minor {
            write!(f, ".{minor}")?;
            if let Some(patch) = self.patch {
                write!(f, ".{patch}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u64, minor: Option<u64>, patch: Option<u64>) -> RequestedVersion {
        RequestedVersion { major, minor, patch }
    }

    #[test]
    fn parses_every_accepted_form() {
        let cases: &[(&[u8], RequestedVersion, &str)] = &[
            (b"2", v(2, None, None), "2"),
            (b"v2", v(2, None, None), "2"),
            (b"V2", v(2, None, None), "2"),
            (b"2.1", v(2, Some(1), None), "2.1"),
            (b"v2.1", v(2, Some(1), None), "2.1"),
            (b"2.1.3", v(2, Some(1), Some(3)), "2.1.3"),
            (b" 2.1 ", v(2, Some(1), None), "2.1"),
            (b"\t v10 \t", v(10, None, None), "10"),
            (b"0", v(0, None, None), "0"),
            (b"1.0.0", v(1, Some(0), Some(0)), "1.0.0"),
        ];
        for (raw, want, normalised) in cases {
            let got = RequestedVersion::parse(raw).unwrap();
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(got.to_string(), *normalised);
        }
    }

    #[test]
    fn refuses_everything_else() {
        let cases: &[(&[u8], VersionError)] = &[
            (b"", VersionError::Empty),
            (b"   ", VersionError::Empty),
            (b"v", VersionError::Invalid),
            (b"vv2", VersionError::Invalid),
            (b"2.", VersionError::Invalid),
            (b".2", VersionError::Invalid),
            (b"2..1", VersionError::Invalid),
            (b"2.1.3.4", VersionError::Invalid),
            (b"2.x", VersionError::Invalid),
            (b"02", VersionError::Invalid),
            (b"2.01", VersionError::Invalid),
            (b"-2", VersionError::Invalid),
            (b"+2", VersionError::Invalid),
            (b"2.1.3-beta", VersionError::Invalid),
            (b"2 1", VersionError::Invalid),
            (b"2,2.1", VersionError::Invalid),
            (b"latest", VersionError::Invalid),
            (b"\xff\xfe", VersionError::Invalid),
            (b"1234567890", VersionError::Invalid),
            (b"111111111111111111111111111111111", VersionError::TooLong),
        ];
        for (raw, want) in cases {
            assert_eq!(RequestedVersion::parse(raw), Err(want.clone()), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn resolves_by_caret_range() {
        let deployed = ["1.4.0", "2.0.3", "2.1.0", "3.0.0-rc.1"].map(|s| Version::parse(s).unwrap());
        let cases: &[(&str, &[&str])] = &[
            ("1", &["1.4.0"]),
            ("1.5", &[]),
            ("2", &["2.0.3", "2.1.0"]),
            ("2.0", &["2.0.3", "2.1.0"]),
            ("2.0.4", &["2.1.0"]),
            ("2.1", &["2.1.0"]),
            ("2.1.3", &[]),
            ("3", &[]),
        ];
        for (requested, want) in cases {
            let req = RequestedVersion::parse_str(requested).unwrap();
            let got: Vec<String> = deployed.iter().filter(|d| req.is_served_by(d)).map(ToString::to_string).collect();
            assert_eq!(&got, want, "request {requested}");
        }
    }

    #[test]
    fn ranges_agree_when_equal() {
        let p = |s: &str| RequestedVersion::parse_str(s).unwrap();
        assert!(p("2").same_range(&p("v2.0.0")));
        assert!(p("2.0").same_range(&p("2")));
        assert!(!p("2").same_range(&p("2.1")));
        assert!(!p("0").same_range(&p("0.0")));
        assert!(p("0.3").same_range(&p("v0.3")));
    }
}
