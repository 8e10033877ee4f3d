//! Value parsers of the command line's flags (clap runs them while parsing).
//!
//! A bad value is answered like every other error, in one line that says what to do, exit 1
//! ([`BadFlag`]); usage errors (unknown flag, missing argument) stay clap's, exit 2.

use crate::fail::Fail;
use crate::fleet::members::Member;
use std::convert::Infallible;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The Envoys that `status`, `shift`, `rollback` and `rollout` act on, where their weights are
/// written, and their catalog.
#[derive(Debug, clap::Args)]
pub struct EnvoyFlags {
    /// An Envoy's admin, `URL` or `NAME=URL`; repeat it for each Envoy of a fleet.
    #[arg(long, value_name = "[NAME=]URL", value_parser = admin_member,
          required_unless_present_any = ["fleet", "runtime_dir", "istio"])]
    pub admin: Vec<Member>,
    /// A file listing the fleet's admins, one `[NAME=]URL` a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// The fleet's weight source: the runtime folder every Envoy watches (the mesh file's
    /// weights.runtime_dir). Weights are written there instead of through an admin.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// How long every admin listed may take to use the weights written.
    #[arg(long, default_value = "10s", value_parser = duration("--converge-timeout"))]
    pub converge_timeout: Duration,
    /// The catalog; default: the one in the running filter's config.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Istio as the engine (`--istio`): the VirtualServices instead of Envoys.
    #[command(flatten)]
    pub istio: crate::istio_engine::IstioFlags,
}

impl EnvoyFlags {
    /// Every admin named by `--admin` and `--fleet`, each once.
    pub fn members(&self) -> Result<Vec<Member>, Fail> {
        let mut members = self.admin.clone();
        if let Some(path) = &self.fleet {
            members.extend(crate::fleet::members::read_fleet_file(path)?);
        }
        crate::fleet::members::unique(members)
    }

    /// The one admin a command that reads a single Envoy uses.
    pub fn one_admin(&self) -> Result<String, Fail> {
        match self.members()?.as_slice() {
            [one] => Ok(one.url.clone()),
            [] => Err(Fail::new("this needs an Envoy admin", "give --admin URL")),
            several => Err(Fail::new(
                format!("this reads one Envoy, and {} admins were given", several.len()),
                "give one --admin, or --runtime-dir DIR for a fleet",
            )),
        }
    }
}

/// A flag's value that does not parse: what is wrong, and what to write instead.
#[derive(Debug, Clone)]
pub struct BadFlag {
    what: String,
    todo: String,
}

impl BadFlag {
    fn new(what: impl fmt::Display, todo: impl fmt::Display) -> Self {
        BadFlag { what: what.to_string(), todo: todo.to_string() }
    }

    /// The one-line failure for a clap error caused by a bad value, if that is what it is.
    pub fn from_clap(error: &clap::Error) -> Option<Fail> {
        let bad = std::error::Error::source(error)?.downcast_ref::<BadFlag>()?;
        Some(Fail::new(&bad.what, &bad.todo))
    }
}

impl fmt::Display for BadFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.what, self.todo)
    }
}

impl std::error::Error for BadFlag {}

/// `--weight`: a whole percentage, 0–100 (`25` or `25%`).
pub fn weight(text: &str) -> Result<u32, BadFlag> {
    text.trim().trim_end_matches('%').parse::<u32>().ok().filter(|w| *w <= 100).ok_or_else(|| {
        BadFlag::new(format!("weight {text:?} is not a whole percentage"), "give --weight from 0 to 100")
    })
}

/// `--steps`: percentages like `5,25,50,100`, strictly increasing, each 1–100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// As written (echoed when a rollout starts).
    pub text: String,
    pub percents: Vec<u32>,
}

pub fn steps(text: &str) -> Result<Steps, BadFlag> {
    let bad = || {
        BadFlag::new(
            format!("steps {text:?} are not increasing percentages"),
            "give --steps like 5,25,50,100 (each 1 to 100, increasing)",
        )
    };
    let percents: Vec<u32> = text
        .split(',')
        .map(|s| s.trim().trim_end_matches('%').parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let increasing = percents.windows(2).all(|w| matches!(w, [a, b] if a < b));
    if percents.is_empty() || !increasing || percents.iter().any(|s| !(1..=100).contains(s)) {
        return Err(bad());
    }
    Ok(Steps { text: text.to_owned(), percents })
}

/// A percentage flag: `1%`, `0.5%` or `1` (a percentage either way) → a fraction (0.01).
pub fn fraction(flag: &'static str) -> impl Fn(&str) -> Result<f64, BadFlag> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim()
            .trim_end_matches('%')
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| p / 100.0)
            .ok_or_else(|| {
                BadFlag::new(format!("{flag} {text:?} is not a percentage"), format!("give {flag} like 1% (0 to 100)"))
            })
    }
}

/// A duration flag: `30s`, `1m30s`, `250ms` (not zero).
pub fn duration(flag: &'static str) -> impl Fn(&str) -> Result<Duration, BadFlag> + Clone + Send + Sync + 'static {
    move |text| {
        humantime::parse_duration(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            BadFlag::new(format!("{flag} {text:?} is not a duration"), format!("give {flag} like 30s, 2m or 250ms"))
        })
    }
}

/// A count flag: a whole number, at least 1.
pub fn count(flag: &'static str) -> impl Fn(&str) -> Result<u64, BadFlag> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            BadFlag::new(format!("{flag} {text:?} is not a whole number above 0"), format!("give {flag} like 10"))
        })
    }
}

/// `--admin`: `127.0.0.1:9901` or `http://127.0.0.1:9901/` → `http://127.0.0.1:9901`, named by
/// its `host:port` unless written `NAME=URL`.
pub fn admin_member(text: &str) -> Result<Member, Infallible> {
    Ok(Member::parse(text))
}

/// A server's base URL as a flag gives it: no trailing `/`, `http://` when it names no scheme
/// (`127.0.0.1:9090/` → `http://127.0.0.1:9090`).
pub fn base_url(text: &str) -> String {
    let url = text.trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// `--selector`: a label `KEY=VALUE`.
pub fn label(text: &str) -> Result<(String, String), BadFlag> {
    text.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| {
        BadFlag::new(format!("selector {text:?} is not KEY=VALUE"), "write it like --selector app=gateway")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_within_1_to_100() {
        assert_eq!(steps("5,25,50,100").unwrap().percents, [5, 25, 50, 100]);
        assert_eq!(steps("50% , 100%").unwrap(), Steps { text: "50% , 100%".into(), percents: vec![50, 100] });
        for bad in ["", "0,50", "50,50", "50,25", "5,101", "a,b", "5,,10"] {
            assert!(steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_durations_weights_labels() {
        let rate = fraction("--max-error-rate");
        assert_eq!(rate("1%").unwrap(), 0.01);
        assert_eq!(rate("0.5").unwrap(), 0.005);
        assert_eq!(
            rate("101%").unwrap_err().to_string(),
            "--max-error-rate \"101%\" is not a percentage; give --max-error-rate like 1% (0 to 100)"
        );
        assert_eq!(duration("--max-p99")("250ms").unwrap(), Duration::from_millis(250));
        assert!(duration("--interval")("0s").is_err());
        assert!(duration("--interval")("soon").unwrap_err().to_string().starts_with("--interval \"soon\""));
        assert_eq!(count("--count")("3").unwrap(), 3);
        assert!(count("--count")("0").unwrap_err().to_string().starts_with("--count \"0\" is not a whole number"));
        assert_eq!(weight("100").unwrap(), 100);
        assert_eq!(weight("25%").unwrap(), 25);
        assert!(weight("101").unwrap_err().to_string().starts_with("weight \"101\""));
        assert_eq!(admin_member("127.0.0.1:9901/").unwrap().url, "http://127.0.0.1:9901");
        assert_eq!(admin_member("https://envoy:9901").unwrap().url, "https://envoy:9901");
        assert_eq!(label("app=gateway").unwrap(), ("app".to_owned(), "gateway".to_owned()));
        assert!(label("app").is_err());
    }
}
