//! `Request::new` + `decide` over the benchmark's mix, compiled for wasm32-wasip1 and called
//! from node (V8, the engine Envoy runs meshver.wasm on) by bench/decide-wasm/run.mjs. No
//! host calls happen here: the time is meshver's own work inside the VM. The module also
//! carries meshver's proxy-wasm entry points, never called.

use meshver::config::Catalog;
use meshver::request::Request;
use std::hint::black_box;

struct Setup {
    catalog: Catalog,
    mix: Vec<Vec<(String, Vec<u8>)>>,
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
        requests.push(headers);
    }
    Some(Setup { catalog, mix: requests })
}

/// Runs the whole mix `rounds` times; returns how many requests were decided (0 on a setup error).
#[no_mangle]
pub extern "C" fn bench_decide(rounds: u32) -> u32 {
    let Some(setup) = setup() else { return 0 };
    let mut decided = 0u32;
    for _ in 0..rounds {
        for headers in &setup.mix {
            let request = Request::new(black_box(headers));
            black_box(meshver::resolve::decide(&setup.catalog, &request, 1_782_864_000));
            decided += 1;
        }
    }
    decided
}

/// Also copies every header map once per request, as the host adapter's map fetch does
/// (`get_map_bytes` deserialises into owned Strings and Vecs): the allocation share.
#[no_mangle]
pub extern "C" fn bench_decide_with_copy(rounds: u32) -> u32 {
    let Some(setup) = setup() else { return 0 };
    let mut decided = 0u32;
    for _ in 0..rounds {
        for headers in &setup.mix {
            let owned: Vec<(String, Vec<u8>)> = black_box(headers).clone();
            let request = Request::new(&owned);
            black_box(meshver::resolve::decide(&setup.catalog, &request, 1_782_864_000));
            decided += 1;
        }
    }
    decided
}
