//! `meshver render envoy MESH` and `meshver render istio CATALOG`: config written to a file
//! or stdout (the renderers themselves are in `render/`); with the mesh file's `live_config`,
//! the filters' config into its live folder as well.

use super::{emit, to_json};
use crate::catalog::load_file;
use crate::fail::{Fail, Outcome};
use crate::render::envoy::{FilterHost, WasmPath};
use crate::render::istio::IstioOptions;
use crate::render::live::{live_dir, LiveBootstrap};
use crate::render::{envoy as envoy_config, istio as istio_resources};
use std::path::{Path, PathBuf};

/// A complete Envoy bootstrap (JSON) from a mesh file.
pub fn envoy(mesh: &Path, wasm_relative_to: Option<PathBuf>, host: FilterHost, output: Option<&Path>) -> Outcome {
    let wasm = match wasm_relative_to {
        Some(dir) => WasmPath::RelativeTo(dir),
        None => WasmPath::Absolute,
    };
    let bootstrap = envoy_config::render_on(mesh, &wasm, host)?;
    let bootstrap = match live_dir(mesh)? {
        // Live config swaps the wasm filters' config in files Envoy watches; the native filter's
        // catalog is in the bootstrap only.
        Some(_) if host == FilterHost::Native => {
            return Err(Fail::new(
                format!("{}: live_config is for the wasm host", mesh.display()),
                "drop live_config from the mesh file, or render with --host wasm",
            ))
        }
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
