//! `meshver publish MESH`: the mesh file's catalogs, checked exactly as the filter checks them,
//! written into the live folder Envoy watches (`live_config`), which Envoy takes without a
//! restart. Only what changed is written, each file by a rename.

use crate::fail::{Fail, Outcome};
use crate::render::envoy::{render, WasmPath};
use crate::render::live::{live_dir, LiveBootstrap};
use std::path::{Path, PathBuf};

pub fn run(mesh: &Path, wasm_relative_to: Option<PathBuf>) -> Outcome {
    let Some(dir) = live_dir(mesh)? else {
        return Err(Fail::new(
            format!("{} has no live_config: its Envoy reads the filters' config from its bootstrap", mesh.display()),
            "add \"live_config\": {\"dir\": \"live\"} to it, then render the bootstrap again and restart Envoy once",
        ));
    };
    let wasm = wasm_relative_to.map_or(WasmPath::Absolute, WasmPath::RelativeTo);
    let live = LiveBootstrap::split(render(mesh, &wasm)?, &dir);
    for (filter, changed) in live.publish(&dir)? {
        let what = if changed { "published" } else { "unchanged" };
        println!(
            "{}: {what}, version {} ({})",
            filter.name,
            filter.version,
            dir.join(format!("{}.json", filter.name)).display()
        );
    }
    Ok(())
}
