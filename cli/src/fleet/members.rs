//! The Envoys of a fleet, by name and admin URL: from repeated `--admin [NAME=]URL` and from a
//! `--fleet FILE` that lists one `[NAME=]URL` a line.

use crate::fail::{Fail, Outcome};
use std::path::Path;

/// One Envoy of the fleet: what reports call it, and its admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// `http://host:port`, as `--admin` is parsed.
    pub url: String,
}

impl Member {
    /// `NAME=URL` or `URL` (then the name is the URL's `host:port`); a URL without a scheme is
    /// `http://`.
    pub fn parse(text: &str) -> Member {
        let text = text.trim();
        let (name, url) = match text.split_once('=') {
            Some((name, url)) if !name.contains("://") => (Some(name.trim()), url.trim()),
            _ => (None, text),
        };
        let url = crate::flags::base_url(url);
        let name = match name {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => url.split_once("://").map_or(url.as_str(), |(_, rest)| rest).to_owned(),
        };
        Member { name, url }
    }
}

/// The members a fleet file lists: one `[NAME=]URL` a line; empty lines and `#` comments skipped.
pub fn read_fleet_file(path: &Path) -> Outcome<Vec<Member>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Fail::new(
            format!("cannot read fleet file {}: {e}", path.display()),
            "give a file with one NAME=ADMIN_URL a line",
        )
    })?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(Member::parse)
        .collect())
}

/// Every member once, first listed first; two members of one name are refused.
pub fn unique(members: Vec<Member>) -> Outcome<Vec<Member>> {
    let mut kept: Vec<Member> = Vec::new();
    for member in members {
        match kept.iter().find(|m| m.name == member.name) {
            Some(same) if same.url == member.url => {}
            Some(same) => {
                return Err(Fail::new(
                    format!("two Envoys are named {:?} ({} and {})", member.name, same.url, member.url),
                    "give each --admin or fleet file line its own NAME=",
                ))
            }
            None => kept.push(member),
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(
            Member::parse("edge-a=127.0.0.1:9901/"),
            Member { name: "edge-a".into(), url: "http://127.0.0.1:9901".into() }
        );
        assert_eq!(
            Member::parse("127.0.0.1:9901"),
            Member { name: "127.0.0.1:9901".into(), url: "http://127.0.0.1:9901".into() }
        );
        assert_eq!(Member::parse("https://envoy:9901").name, "envoy:9901");
        assert_eq!(Member::parse("b=https://envoy:9901").url, "https://envoy:9901");
    }

    #[test]
    fn fleet_files_and_duplicates() {
        let path = std::env::temp_dir().join(format!("meshver-fleet-{}.txt", std::process::id()));
        std::fs::write(&path, "# the edge\na=127.0.0.1:1\n\n  b=127.0.0.1:2  # second\n127.0.0.1:3\n").unwrap();
        let names: Vec<String> = read_fleet_file(&path).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b", "127.0.0.1:3"]);
        let _ = std::fs::remove_file(&path);
        let twice = vec![Member::parse("a=1.1.1.1:1"), Member::parse("a=1.1.1.1:1")];
        assert_eq!(unique(twice).unwrap().len(), 1);
        let clash = unique(vec![Member::parse("a=1.1.1.1:1"), Member::parse("a=1.1.1.1:2")]).unwrap_err();
        assert!(clash.lines[0].contains("two Envoys are named \"a\""));
    }
}
