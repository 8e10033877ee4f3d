//! `meshver render envoy MESH` and `meshver render istio CATALOG`: config written to a file
//! or stdout (the renderers themselves are in `render/`); with the mesh file's `live_config`,
//! the filters' config into its live folder as well.

use super::{emit, to_json};
use crate::catalog::load_file;
use crate::fail::Outcome;
use crate::render::envoy::WasmPath;
use crate::render::istio::IstioOptions;
use crate::render::live::{live_dir, LiveBootstrap};
use crate::render::{envoy as envoy_config, istio as istio_resources};
use std::path::{Path, PathBuf};

/// A complete Envoy bootstrap (JSON) from a mesh file.
pub fn envoy(mesh: &Path, wasm_relative_to: Option<PathBuf>, output: Option<&Path>) -> Outcome {
    let wasm = match wasm_relative_to {
        Some(dir) => WasmPath::RelativeTo(dir),
        None => WasmPath::Absolute,
    };
    let bootstrap = envoy_config::render(mesh, &wasm)?;
    let bootstrap = match live_dir(mesh)? {
        // The filters' config goes into the live folder, before the bootstrap that reads it.
        Some(dir) => {
            let live = LiveBootstrap::split(bootstrap, &dir);
            live.write(&dir)?;
            live.bootstrap
        }
        None => bootstrap,
    };
    emit(output, &to_json(&bootstrap)?)
}

/// Istio resources (multi-document YAML) from a catalog.
pub fn istio(catalog: &Path, options: &IstioOptions, output: Option<&Path>) -> Outcome {
    let file = load_file(catalog)?;
    let resources = istio_resources::render(&file, options)?;
    emit(output, &istio_resources::to_yaml(&resources))
}
