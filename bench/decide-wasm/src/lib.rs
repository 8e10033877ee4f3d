//! `Request::new` + `decide` over the benchmark's mix, compiled for wasm32-wasip1 and called
//! from node (V8, the engine Envoy runs meshver.wasm on) by bench/v8.mjs. No
//! host calls happen here: the time is meshver's own work inside the VM. The module also
//! carries meshver's proxy-wasm entry points, never called.

use meshver::config::Catalog;
use meshver::request::Request;
use std::hint::black_box;

struct Setup {
    catalog: Catalog,
    /// Each request's header map, serialised as the host hands it over.
    mix: Vec<Vec<u8>>,
}

static CATALOG: &[u8] = include_bytes!("../../../examples/catalog.json");
static MIX: &[u8] = include_bytes!("../../mix.json");

fn setup() -> Option<Setup> {
    let catalog = meshver::config::load(CATALOG).ok()?;
    let mix = meshver_bench_mix::parse_mix(MIX).ok()?;
    Some(Setup { catalog, mix: mix.into_iter().map(|request| request.wire).collect() })
}

/// Runs the whole mix `rounds` times over header maps read once beforehand: `decide` alone.
/// Returns how many requests were decided (0 on a setup error).
#[no_mangle]
pub extern "C" fn bench_decide(rounds: u32) -> u32 {
    let Some(setup) = setup() else { return 0 };
    let maps: Vec<Vec<(&[u8], &[u8])>> =
        setup.mix.iter().map(|wire| meshver::header_map::parse(wire).unwrap_or_default()).collect();
    let mut decided = 0u32;
    for _ in 0..rounds {
        for headers in &maps {
            let request = Request::new(black_box(headers));
            black_box(meshver::resolve::decide(&setup.catalog, &request, 1_782_864_000));
            decided += 1;
        }
    }
    decided
}

/// Also reads each serialised header map per request, as the host adapter does.
#[no_mangle]
pub extern "C" fn bench_decide_with_map(rounds: u32) -> u32 {
    let Some(setup) = setup() else { return 0 };
    let mut decided = 0u32;
    for _ in 0..rounds {
        for wire in &setup.mix {
            let headers = meshver::header_map::parse(black_box(wire)).unwrap_or_default();
            let request = Request::new(&headers);
            black_box(meshver::resolve::decide(&setup.catalog, &request, 1_782_864_000));
            decided += 1;
        }
    }
    decided
}
