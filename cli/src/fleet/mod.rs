//! Weights for a fleet of Envoys: where `shift`, `rollback` and `rollout` write runtime keys,
//! and whether every Envoy uses what was written.
//!
//! A fleet shares one runtime folder ([`runtime_dir`]) that each Envoy's `fleet` disk layer
//! watches; the commands write whole versions of it and read its admins only to check that
//! each one loaded it ([`converge`]). Without a folder, a single Envoy is acted on through its
//! admin layer, as before (a demo, or one proxy).

pub mod converge;
pub mod members;
pub mod runtime_dir;

use crate::admin::snapshot::Snapshot;
use crate::admin::{Admin, AdminError};
use crate::catalog::load_file;
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use converge::{Report, State, Written};
use members::Member;
use meshver::config::Service;
use runtime_dir::RuntimeDir;
use std::time::Duration;

/// Where weights are written.
pub enum Source {
    /// One Envoy's admin layer (`POST /runtime_modify`).
    Admin(Admin),
    /// The runtime folder every Envoy of the fleet watches.
    Folder(RuntimeDir),
}

/// Why a write failed: an admin that did not take it, or a folder that could not be written.
#[derive(Debug)]
pub struct WriteError(pub String);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AdminError> for WriteError {
    fn from(e: AdminError) -> Self {
        WriteError(e.0)
    }
}

/// The Envoys acted on, where their weights are written, and the services of their catalog.
pub struct Fleet {
    pub source: Source,
    /// The admins to check (every `--admin` and `--fleet` line); with [`Source::Admin`], that one.
    pub members: Vec<Member>,
    pub converge_timeout: Duration,
    pub services: Vec<Service>,
    /// Live weights as the source holds them: the folder's keys, or the admin's runtime and
    /// route config.
    pub snapshot: Snapshot,
}

impl Fleet {
    /// Opens the weight source the flags name: `--runtime-dir`, else the one `--admin`. The
    /// services come from `--catalog`, else from the first admin that answers.
    pub fn open(flags: &EnvoyFlags) -> Outcome<Fleet> {
        let members = flags.members()?;
        let converge_timeout = flags.converge_timeout;
        let Some(path) = &flags.runtime_dir else {
            let [member] = members.as_slice() else {
                return Err(Fail::new(
                    format!("{} Envoy admins but no shared weight source", members.len()),
                    "give --runtime-dir DIR (the mesh file's weights.runtime_dir), or one --admin to act on one Envoy",
                ));
            };
            let admin = Admin::new(&member.url);
            admin.ping().map_err(|e| e.fail(&admin))?;
            let snapshot = Snapshot::fetch(&admin).map_err(|e| e.fail(&admin))?;
            let services = snapshot.services(flags.catalog.as_deref(), &admin)?;
            return Ok(Fleet { source: Source::Admin(admin), members, converge_timeout, services, snapshot });
        };
        let folder = RuntimeDir::open(path)?;
        let services = match &flags.catalog {
            Some(catalog) => load_file(catalog)?.catalog.services,
            None => services_from_members(&members)?,
        };
        let runtime = folder.read()?.values;
        let snapshot = Snapshot { discovered: Default::default(), runtime };
        Ok(Fleet { source: Source::Folder(folder), members, converge_timeout, services, snapshot })
    }

    /// Where the weights go, for messages: `the runtime folder /srv/…` or `the Envoy admin at …`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Admin(admin) => format!("the Envoy admin at {}", admin.url),
            Source::Folder(folder) => format!("the runtime folder {}", folder.path.display()),
        }
    }

    /// The flags that name this weight source again (for the commands a message suggests).
    pub fn flags(&self) -> String {
        match &self.source {
            Source::Admin(admin) => format!("--admin {}", admin.url),
            Source::Folder(folder) => format!("--runtime-dir {}", folder.path.display()),
        }
    }

    /// Sets runtime keys, all at once: one `runtime_modify`, or one new version of the folder.
    pub fn set(&self, values: &[(String, u32)]) -> Result<Written, WriteError> {
        let texts: Vec<(String, String)> = values.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        match &self.source {
            Source::Admin(admin) => {
                admin.set_runtime(values)?;
                Ok(Written { values: texts, version: None, folder: None })
            }
            Source::Folder(folder) => {
                let version = folder.write(&texts).map_err(|fail| WriteError(fail.lines.join(" ")))?;
                Ok(Written { values: texts, version: Some(version.number), folder: Some(version.folder) })
            }
        }
    }

    /// Waits up to `--converge-timeout` for every member to use what was written, and says
    /// where each stands. Writing to the folder, an admin layer value over a written key is
    /// removed from that Envoy (an earlier `shift --admin` of it), so that the folder's shows.
    pub fn converge(&self, written: &Written) -> Vec<Report> {
        let clear = matches!(self.source, Source::Folder(_));
        converge::wait(&self.members, written, self.converge_timeout, clear)
    }

    /// The Envoys that do not use what was written, as report lines; empty when all do.
    pub fn lagging(&self, written: &Written) -> Vec<String> {
        self.converge(written).iter().filter(|r| r.state != State::Converged).map(Report::describe).collect()
    }

    /// A rollout's failure for Envoys that did not `what` ("start mirroring") by the deadline:
    /// `outcome` first (what the rollout did about it), then one line per Envoy.
    pub fn lagging_failure(&self, lagging: &[String], outcome: &str, what: &str, todo: &str) -> Fail {
        let mut fail = Fail::new(
            format!(
                "{outcome}: {} of {} Envoys did not {what} within {}",
                lagging.len(),
                self.members.len(),
                humantime::format_duration(self.converge_timeout)
            ),
            todo,
        );
        fail.lines.extend(lagging.iter().map(|l| format!("  {l}")));
        fail
    }

    /// For `shift` and `rollback`: waits for the members, then says how soon they all used what
    /// was written (`all 3 Envoys use it, the last after 0.21s`), or fails naming the others.
    pub fn settle(&self, written: &Written) -> Outcome {
        let reports = self.converge(written);
        let lagging: Vec<String> =
            reports.iter().filter(|r| r.state != State::Converged).map(Report::describe).collect();
        if !lagging.is_empty() {
            return Err(not_converged(&lagging, self));
        }
        if let (Source::Folder(_), Some(last)) = (&self.source, reports.iter().map(|r| r.after).max()) {
            println!("all {} Envoys use it, the last after {:.3}s", reports.len(), last.as_secs_f64());
        }
        Ok(())
    }
}

/// The services of the first member whose Envoy answers (the catalogs of its filters).
fn services_from_members(members: &[Member]) -> Outcome<Vec<Service>> {
    let mut last = None;
    for member in members {
        let admin = Admin::new(&member.url);
        match Snapshot::fetch(&admin) {
            Ok(snapshot) => return snapshot.services(None, &admin),
            Err(e) => last = Some(e.fail(&admin)),
        }
    }
    Err(last.unwrap_or_else(|| {
        Fail::new("no catalog to act on", "give --catalog FILE, or an --admin whose Envoy runs the filter")
    }))
}

/// One line for commands that wrote weights and found Envoys not using them by the deadline.
pub fn not_converged(lagging: &[String], fleet: &Fleet) -> Fail {
    let mut lines = vec![format!(
        "meshver: {} of {} Envoys do not use the weights written to {} after {}; \
         they keep their last weights until they reload it (check with `meshver status {}`)",
        lagging.len(),
        fleet.members.len(),
        fleet.describe(),
        humantime::format_duration(fleet.converge_timeout),
        fleet.flags(),
    )];
    lines.extend(lagging.iter().map(|l| format!("  {l}")));
    Fail::report(lines)
}
