//! The commands, one file each: what `main` dispatches to.

pub mod check;
pub mod publish;
pub mod render;
pub mod rollback;
pub mod rollout;
pub mod shift;
pub mod status;
pub mod watch;

use crate::admin::snapshot::Snapshot;
use crate::admin::Admin;
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use meshver::config::Service;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An Envoy admin, what its Envoy runs, and the services to act on: where the commands that
/// read or move live weights start.
pub struct Connected {
    pub admin: Admin,
    pub snapshot: Snapshot,
    pub services: Vec<Service>,
}

impl Connected {
    /// Checks that the admin answers (and is Envoy's), then reads it.
    pub fn open(envoy: &EnvoyFlags) -> Outcome<Connected> {
        let admin = Admin::new(&envoy.one_admin()?);
        admin.ping().map_err(|e| e.fail(&admin))?;
        Connected::finish(admin, envoy)
    }

    /// Reads what the admin's Envoy runs (without checking first that it answers).
    pub fn read(envoy: &EnvoyFlags) -> Outcome<Connected> {
        Connected::finish(Admin::new(&envoy.one_admin()?), envoy)
    }

    /// The services come from `--catalog`, or else from the Envoy.
    fn finish(admin: Admin, envoy: &EnvoyFlags) -> Outcome<Connected> {
        let snapshot = Snapshot::fetch(&admin).map_err(|e| e.fail(&admin))?;
        let services = snapshot.services(envoy.catalog.as_deref(), &admin)?;
        Ok(Connected { admin, snapshot, services })
    }
}

/// A flag that Ctrl-C sets, for a command that stops cleanly on it (rolls back, or gives the
/// terminal back) instead of dying mid-change.
pub fn interrupt_flag() -> Outcome<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Fail::new(format!("cannot handle Ctrl-C: {e}"), "run meshver from a normal shell"))?;
    Ok(interrupted)
}

/// Pretty JSON and a newline.
pub fn to_json(value: &impl Serialize) -> Outcome<String> {
    serde_json::to_string_pretty(value)
        .map(|text| format!("{text}\n"))
        .map_err(|e| Fail::new(format!("cannot write JSON: {e}"), "report this as a bug"))
}

/// Writes a command's output to `output`, or to stdout.
pub fn emit(output: Option<&Path>, text: &str) -> Outcome {
    match output {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            Fail::new(format!("cannot write {}: {e}", path.display()), "check the folder exists and is writable")
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .map_err(|e| Fail::new(format!("cannot write to stdout: {e}"), "check the pipe"))
        }
    }
}
