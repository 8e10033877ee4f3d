//! JSON pointers (RFC 6901) with one extension: a `*` segment stands for every element of
//! an array. Pointers come from the configuration and are parsed once, at load.

use std::fmt;

/// The most segments a configured pointer may have. Walking a body follows the pointer,
/// so this also bounds every recursion over a body.
pub const MAX_SEGMENTS: usize = 32;

/// One step of a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member, or an array index when the segment is a decimal number.
    Key(String),
    /// `*`: every element of an array.
    Each,
}

/// A parsed pointer; the empty pointer is the whole body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pointer {
    pub segments: Vec<Segment>,
}

impl Pointer {
    /// Parses `""` or `/a/b~1c/*/d`; `~0` is `~` and `~1` is `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Pointer::default());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} is not a JSON pointer: it must be empty or start with '/'"));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if segments.len() == MAX_SEGMENTS {
                return Err(format!("{text:?} has more than {MAX_SEGMENTS} segments"));
            }
            if raw == "*" {
                segments.push(Segment::Each);
                continue;
            }
            segments.push(Segment::Key(
                unescape(raw)
                    .ok_or_else(|| format!("{text:?} is not a JSON pointer: '~' must be followed by 0 or 1"))?,
            ));
        }
        Ok(Pointer { segments })
    }

    /// Whether this pointer names `other` or something inside it (`/a` covers `/a/b`).
    /// A `*` covers every index, and an index is covered by `*`.
    pub fn covers(&self, other: &Pointer) -> bool {
        self.segments.len() <= other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| match (a, b) {
                (Segment::Key(a), Segment::Key(b)) => a == b,
                (Segment::Each, Segment::Each) => true,
                (Segment::Each, Segment::Key(k)) | (Segment::Key(k), Segment::Each) => k.parse::<usize>().is_ok(),
            })
    }

    /// Positions of the `*` segments.
    pub fn wildcards(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().enumerate().filter(|(_, s)| **s == Segment::Each).map(|(i, _)| i)
    }

    /// Whether the last segment is `*`.
    pub fn ends_with_each(&self) -> bool {
        self.segments.last() == Some(&Segment::Each)
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Appends one RFC 6901 segment (escaped) to a pointer being built.
pub fn push_escaped(pointer: &mut String, key: &str) {
    pointer.push('/');
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Key(key) => push_escaped(&mut text, key),
                Segment::Each => text.push_str("/*"),
            }
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    #[test]
    fn parses_and_prints() {
        let cases: Vec<(&str, Vec<Segment>)> = vec![
            ("", vec![]),
            ("/", vec![key("")]),
            ("/name", vec![key("name")]),
            ("/a~1b/c~0d", vec![key("a/b"), key("c~d")]),
            ("/items/*/qty", vec![key("items"), Segment::Each, key("qty")]),
        ];
        for (text, want) in cases {
            let got = Pointer::parse(text).unwrap();
            assert_eq!(got.segments, want, "{text}");
            assert_eq!(got.to_string(), *text);
        }
    }

    #[test]
    fn refuses_bad_pointers() {
        let too_deep = "/a".repeat(MAX_SEGMENTS + 1);
        for text in ["name", "a/b", "/a~", "/a~2", "*", too_deep.as_str()] {
            assert!(Pointer::parse(text).is_err(), "{text}");
        }
        assert!(Pointer::parse(&"/a".repeat(MAX_SEGMENTS)).is_ok());
    }

    #[test]
    fn covers_itself_and_below() {
        let p = |t: &str| Pointer::parse(t).unwrap();
        assert!(p("/a").covers(&p("/a")));
        assert!(p("/a").covers(&p("/a/b")));
        assert!(p("").covers(&p("/a")));
        assert!(!p("/a/b").covers(&p("/a")));
        assert!(!p("/a").covers(&p("/ab")));
        assert!(p("/items/*").covers(&p("/items/0/qty")));
        assert!(p("/items/0").covers(&p("/items/*/qty")));
        assert!(!p("/items/*").covers(&p("/items/x")));
    }
}
