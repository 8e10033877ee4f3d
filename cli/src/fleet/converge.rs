//! Whether each Envoy of a fleet uses what was written: its `GET /runtime` (each key's value in
//! each layer, and the final one) compared with the keys written, until all agree or a deadline.

use super::members::Member;
use super::runtime_dir::{ID_KEY, VERSION_KEY};
use crate::admin::Admin;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The name of the disk layer `render envoy` gives the fleet's runtime folder.
pub const FLEET_LAYER: &str = "fleet";
/// The longest one admin call may take while polling (a stalled Envoy answers nothing).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const POLL_EVERY: Duration = Duration::from_millis(100);

/// What was written, for Envoys to be compared with.
#[derive(Debug, Clone)]
pub struct Written {
    /// Runtime keys and values (an empty value: the key was removed).
    pub values: Vec<(String, String)>,
    /// The runtime folder's version, when written there (None: through one Envoy's admin).
    pub version: Option<u64>,
    /// The folder's name (its `.id`), when written there.
    pub folder: Option<String>,
}

/// Where one Envoy stands against what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Converged,
    /// Its admin did not answer (a stalled or stopped Envoy).
    Silent(String),
    /// Its runtime has no layer named `fleet`: it was not rendered with a runtime folder.
    NoFleetLayer,
    /// Its fleet layer comes from another runtime folder (named `folder`).
    OtherFolder {
        folder: String,
    },
    /// Its fleet layer holds another version of the folder (not reloaded yet, or another folder):
    /// the version it holds, and the first written key whose value differs (or the first key).
    Behind {
        version: Option<String>,
        written_version: u64,
        key: String,
        uses: Option<String>,
        written: String,
    },
    /// Its admin layer holds a value over the written one (an earlier `runtime_modify`).
    Overridden {
        key: String,
        admin: String,
        written: String,
    },
}

/// One Envoy and where it stands.
#[derive(Debug, Clone)]
pub struct Report {
    pub member: Member,
    pub state: State,
    /// How long after the check started it was last read (when it converged, if it did).
    pub after: Duration,
}

impl Report {
    /// `edge-c (http://127.0.0.1:9911): not answering (timed out)`, for people.
    pub fn describe(&self) -> String {
        format!("{} ({}): {}", self.member.name, self.member.url, self.what())
    }

    /// Where it stands, for people: `not answering (timed out)`.
    pub fn what(&self) -> String {
        match &self.state {
            State::Converged => "uses what was written".to_owned(),
            State::Silent(why) => format!("not answering ({why})"),
            State::NoFleetLayer => {
                format!("has no runtime layer {FLEET_LAYER:?} (render it from a mesh file with weights.runtime_dir)")
            }
            State::OtherFolder { folder } => {
                format!("watches another runtime folder (named {folder}; this one's is in its .id file)")
            }
            State::Behind { version, written_version, key, uses, written } => format!(
                "its runtime folder layer is at version {} (written: {written_version}): {key} is {}, written {}",
                version.as_deref().unwrap_or("none"),
                uses.as_deref().unwrap_or("unset"),
                if written.is_empty() { "unset" } else { written }
            ),
            State::Overridden { key, admin, written } => {
                format!("its admin layer sets {key} to {admin} over the {written} written")
            }
        }
    }
}

/// Where an Envoy stands, from its `GET /runtime` answer.
pub fn assess(runtime: &Value, written: &Written) -> State {
    let layers: Vec<&str> =
        runtime.get("layers").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let position = |name: &str| layers.iter().position(|l| *l == name);
    let entry = |key: &str| runtime.get("entries")?.get(key);
    let layer_value = |key: &str, layer: Option<usize>| -> Option<String> {
        let values = entry(key)?.get("layer_values")?.as_array()?;
        values.get(layer?)?.as_str().filter(|v| !v.is_empty()).map(str::to_owned)
    };
    if let Some(version) = written.version {
        let Some(fleet) = position(FLEET_LAYER) else { return State::NoFleetLayer };
        if let (Some(want), Some(has)) = (&written.folder, layer_value(ID_KEY, Some(fleet))) {
            if *want != has {
                return State::OtherFolder { folder: has };
            }
        }
        let loaded = layer_value(VERSION_KEY, Some(fleet));
        let differs =
            |(key, value): &&(String, String)| layer_value(key, Some(fleet)).as_deref().unwrap_or("") != value;
        let stale = loaded.as_deref() != Some(version.to_string().as_str());
        let first = written.values.iter().find(differs).or_else(|| written.values.first().filter(|_| stale));
        if let Some((key, value)) = first {
            let uses = layer_value(key, Some(fleet));
            return State::Behind {
                version: loaded,
                written_version: version,
                key: key.clone(),
                uses,
                written: value.clone(),
            };
        }
        if stale {
            let (key, written_value) = (VERSION_KEY.to_owned(), version.to_string());
            let uses = loaded.clone();
            return State::Behind { version: loaded, written_version: version, key, uses, written: written_value };
        }
    }
    let admin = position("admin");
    for (key, value) in &written.values {
        let over = layer_value(key, admin);
        if let Some(over) = over.filter(|over| over != value) {
            return State::Overridden { key: key.clone(), admin: over, written: value.clone() };
        }
    }
    State::Converged
}

/// Polls every member at once until each uses what was written, or `timeout` has passed; then
/// where each stands. With `clear_overrides`, an admin layer value over a written key is removed
/// (`runtime_modify?key=`) once, so that the folder's value shows.
pub fn wait(members: &[Member], written: &Written, timeout: Duration, clear_overrides: bool) -> Vec<Report> {
    let start = Instant::now();
    let deadline = start + timeout;
    std::thread::scope(|scope| {
        let polls: Vec<_> = members
            .iter()
            .map(|member| {
                scope.spawn(move || {
                    let state = poll(member, written, deadline, clear_overrides);
                    (state, start.elapsed())
                })
            })
            .collect();
        members
            .iter()
            .zip(polls)
            .map(|(member, poll)| {
                let (state, after) =
                    poll.join().unwrap_or_else(|_| (State::Silent("the check failed".to_owned()), start.elapsed()));
                Report { member: member.clone(), state, after }
            })
            .collect()
    })
}

fn poll(member: &Member, written: &Written, deadline: Instant, clear_overrides: bool) -> State {
    let mut cleared = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let admin = Admin::with_timeout(&member.url, left.clamp(Duration::from_millis(100), CALL_TIMEOUT));
        let state = match admin.runtime_layers() {
            Ok(runtime) => assess(&runtime, written),
            Err(e) => State::Silent(e.to_string()),
        };
        if let State::Overridden { .. } = &state {
            if clear_overrides && !cleared {
                cleared = true;
                let keys: Vec<String> = written.values.iter().map(|(k, _)| k.clone()).collect();
                let _ = admin.clear_runtime(&keys);
                continue;
            }
        }
        if state == State::Converged || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "routing.user-v2.user-2.1.0";

    fn runtime(version: &str, fleet: &str, admin: &str) -> Value {
        json!({"layers": ["static", "fleet", "admin"], "entries": {
            ID_KEY: {"layer_values": ["", "f1", ""], "final_value": "f1"},
            VERSION_KEY: {"layer_values": ["", version, ""], "final_value": version},
            KEY: {"layer_values": ["", fleet, admin], "final_value": if admin.is_empty() { fleet } else { admin }},
        }})
    }

    fn written(value: &str) -> Written {
        Written { values: vec![(KEY.to_owned(), value.to_owned())], version: Some(5), folder: Some("f1".into()) }
    }

    #[test]
    fn an_envoy_converges_once_its_fleet_layer_holds_the_version_written() {
        assert_eq!(assess(&runtime("5", "25", ""), &written("25")), State::Converged);
        assert_eq!(
            assess(&runtime("4", "10", ""), &written("25")),
            State::Behind {
                version: Some("4".into()),
                written_version: 5,
                key: KEY.into(),
                uses: Some("10".into()),
                written: "25".into()
            }
        );
        // The same value in an older version is still behind: it has not loaded the folder.
        assert!(matches!(assess(&runtime("4", "25", ""), &written("25")), State::Behind { .. }));
        assert_eq!(
            assess(&runtime("5", "25", "7"), &written("25")),
            State::Overridden { key: KEY.into(), admin: "7".into(), written: "25".into() }
        );
        assert_eq!(assess(&runtime("5", "25", "25"), &written("25")), State::Converged);
        // A removed key: converged once the fleet layer no longer has it.
        assert_eq!(assess(&runtime("5", "", ""), &written("")), State::Converged);
        let mut elsewhere = runtime("5", "25", "");
        elsewhere["entries"][ID_KEY]["layer_values"][1] = json!("f2");
        assert_eq!(assess(&elsewhere, &written("25")), State::OtherFolder { folder: "f2".into() });
        let no_fleet = json!({"layers": ["static", "admin"], "entries": {}});
        assert_eq!(assess(&no_fleet, &written("25")), State::NoFleetLayer);
    }

    #[test]
    fn through_one_admin_only_the_admin_layer_counts() {
        let by_admin = Written { values: vec![(KEY.to_owned(), "25".to_owned())], version: None, folder: None };
        let admin_only = json!({"layers": ["static", "admin"], "entries": {
            KEY: {"layer_values": ["", "25"], "final_value": "25"}}});
        assert_eq!(assess(&admin_only, &by_admin), State::Converged);
    }

    #[test]
    fn a_silent_envoy_is_reported_by_name_within_the_deadline() {
        // A listening socket that never answers: the poll gives up at the deadline.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let member = Member::parse(&format!("edge-c={}", silent.local_addr().unwrap()));
        let start = Instant::now();
        let reports = wait(std::slice::from_ref(&member), &written("25"), Duration::from_millis(600), false);
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert!(matches!(reports[0].state, State::Silent(_)), "{:?}", reports[0].state);
        assert!(reports[0].describe().starts_with("edge-c (http://127.0.0.1:"), "{}", reports[0].describe());
    }
}
