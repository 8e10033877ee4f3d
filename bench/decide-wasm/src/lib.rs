//! `Request::new` + `decide` over the benchmark's mix, compiled for wasm32-wasip1 and called
//! from node (V8, the engine Envoy runs meshver.wasm on) by bench/decide-wasm/run.mjs. No
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
static MIX: &str = include_str!("../../mix.json");

fn setup() -> Option<Setup> {
    let catalog = meshver::config::load(CATALOG).ok()?;
    let mix: serde_json::Value = serde_json::from_str(MIX).ok()?;
    let host = mix["host"].as_str()?.to_owned();
    let mut requests = Vec::new();
    for kind in mix["kinds"].as_array()? {
        let mut headers = vec![
            (":method".to_owned(), kind["method"].as_str()?.as_bytes().to_vec()),
            (":scheme".to_owned(), b"http".to_vec()),
            (":path".to_owned(), kind["path"].as_str()?.as_bytes().to_vec()),
            (":authority".to_owned(), host.as_bytes().to_vec()),
            ("user-agent".to_owned(), b"meshver-bench".to_vec()),
        ];
        for (name, value) in kind["headers"].as_object()? {
            headers.push((name.clone(), value.as_str()?.as_bytes().to_vec()));
        }
        headers.push(("x-forwarded-proto".to_owned(), b"http".to_vec()));
        headers.push(("x-request-id".to_owned(), b"0b9c3a6e-6d1f-4c55-9d0a-6c2f1d3e8a11".to_vec()));
        let borrowed: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())).collect();
        requests.push(meshver::header_map::serialise(&borrowed));
    }
    Some(Setup { catalog, mix: requests })
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
