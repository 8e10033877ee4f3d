//! `meshver check CONFIG [--json]`: the filter's own validation, one line per error; with
//! `--json`, the compiled catalog.

use super::{emit, to_json};
use crate::catalog::load_file;
use crate::compat::findings;
use crate::compiled::CompiledCatalog;
use crate::fail::{Fail, Outcome};
use std::path::Path;

pub fn run(path: &Path, json: bool) -> Outcome {
    let file = load_file(path)?;
    if json {
        return emit(None, &to_json(&CompiledCatalog::new(&file.catalog))?);
    }
    let breaking = findings(&file.catalog);
    if !breaking.is_empty() {
        // The same form as load errors: FILE: $.path: message.
        return Err(Fail::report(
            breaking.iter().map(|(at, f)| format!("{}: {at}: {}", path.display(), f.message)).collect(),
        ));
    }
    let services = &file.catalog.services;
    let deployments: usize = services.iter().map(|s| s.deployments.len()).sum();
    println!("{}: ok, {} services, {deployments} deployments", path.display(), services.len());
    Ok(())
}
