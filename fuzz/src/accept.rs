//! Accept parsing and content negotiation: each line of the input is one Accept line of a
//! request to the demo's user service, whose answer is checked against a model of RFC 9110
//! negotiation written here from the parsed ranges alone.

use super::fixtures::demo;
use super::plan::decided;
use meshver::header_map::Header;
use meshver::problem::ProblemKind;
use meshver::resolve::Outcome;
use meshver::sources::{accept_versions, parse_qvalue, AcceptedVersion, FULL_WEIGHT};
use meshver::version::RequestedVersion;

pub fn check(data: &[u8]) {
    if let Some(weight) = parse_qvalue(data) {
        assert!(weight <= FULL_WEIGHT && data.len() <= 5, "{:?} → {weight}", String::from_utf8_lossy(data));
    }
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let mut named = Vec::new();
    for line in &lines {
        for vendor in [None, Some("acme")] {
            for accepted in accept_versions(line, vendor) {
                assert!(super::is_within(accepted.raw, line));
                match accepted.weight {
                    Ok(weight) => assert!(weight <= FULL_WEIGHT),
                    Err(raw) => assert!(super::is_within(raw, line) && parse_qvalue(raw).is_none()),
                }
                if vendor.is_some() {
                    named.push(accepted);
                }
            }
        }
    }
    let mut headers: Vec<Header> = vec![(b":method", b"POST"), (b":path", b"/register"), (b":authority", b"localhost")];
    headers.extend(lines.iter().map(|line| (&b"accept"[..], *line)));
    let plan = decided(demo(), &headers);
    let got = match &plan.outcome {
        Outcome::Forward(forward) => {
            let set = forward.set_headers.iter().find(|(name, _)| *name == "x-api-version");
            Ok(set.map(|(_, value)| String::from_utf8_lossy(value).into_owned()).unwrap_or_default())
        }
        Outcome::Reject(problem) => Err(problem.kind),
        Outcome::PassThrough => panic!("/register is the user service's"),
    };
    assert_eq!(got, negotiated(&named), "Accept {:?}", String::from_utf8_lossy(data));
}

/// RFC 9110 §12.5.1 over the demo's user service (1.4.0, 2.0.3, 2.1.0; default 1): the
/// version header the upstream gets, or the refusal.
fn negotiated(named: &[AcceptedVersion<'_>]) -> Result<String, ProblemKind> {
    let mut offered = Vec::new();
    for accepted in named {
        match (RequestedVersion::parse(accepted.raw), accepted.weight) {
            (Ok(version), Ok(weight)) => offered.push((version, weight)),
            _ => return Err(ProblemKind::MalformedVersion),
        }
    }
    if offered.is_empty() {
        return Ok("1".to_owned());
    }
    let deployed = demo().services.first().map(|s| s.deployments.as_slice()).unwrap_or_default();
    let served = |v: &RequestedVersion| deployed.iter().any(|d| v.is_served_by(&d.version));
    // Weight first, then the order sent: the first of the heaviest that is served.
    let best = offered
        .iter()
        .enumerate()
        .filter(|(_, (version, weight))| *weight > 0 && served(version))
        .max_by_key(|(at, (_, weight))| (*weight, std::cmp::Reverse(*at)));
    best.map(|(_, (version, _))| version.to_string()).ok_or(ProblemKind::NotAcceptable)
}
