//! The body plan, request upgrade and response walk-back of the body arms (bench/body.json),
//! compiled for wasm32-wasip1 and called from node (V8, the engine Envoy runs meshver_body.wasm
//! on) by bench/v8.mjs. No host calls happen here: the time is the data engine's own work
//! inside the VM, without the body filter's copies of the bodies in and out of it. The module
//! also carries meshver's proxy-wasm entry points, never called.

use meshver::config::Catalog;
use meshver_bench_bodies::BodySpec;
use std::hint::black_box;
use std::sync::OnceLock;

static SPEC: &[u8] = include_bytes!("../../body.json");

/// The method of the body arms' requests.
const METHOD: &[u8] = b"POST";

/// The catalog, and the request of each client and size (in bench/body.json's order).
struct Setup {
    catalog: Catalog,
    cases: Vec<Vec<Case>>,
}

/// One client's request with one body size.
struct Case {
    version: String,
    path: String,
    client_body: Vec<u8>,
    upstream_body: Vec<u8>,
}

/// Built once, by the first call (node's warm-up), so that no call times it.
static SETUP: OnceLock<Option<Setup>> = OnceLock::new();

fn setup() -> Option<Setup> {
    let spec = BodySpec::parse(SPEC).ok()?;
    let catalog = meshver::config::load(&spec.catalog_json()).ok()?;
    let sizes = spec.sizes();
    let cases = spec
        .clients()
        .iter()
        .map(|client| {
            sizes
                .iter()
                .map(|size| Case {
                    version: client.version.clone(),
                    path: spec.path(size),
                    client_body: spec.body(&client.version, size.count),
                    upstream_body: spec.body(spec.upstream_version(), size.count),
                })
                .collect()
        })
        .collect();
    Some(Setup { catalog, cases })
}

/// `rounds` requests of client `client` (an index into bench/body.json's clients) with body
/// size `size` (an index into its sizes): per request, the plan, the request upgrade and the
/// response walk-back. Returns how many requests were done (0 when the setup or a rewrite
/// fails).
#[no_mangle]
pub extern "C" fn bench_body(client: u32, size: u32, rounds: u32) -> u32 {
    let Some(setup) = SETUP.get_or_init(setup) else { return 0 };
    let Some(case) = setup.cases.get(client as usize).and_then(|sizes| sizes.get(size as usize)) else { return 0 };
    let Some(data) = setup.catalog.services.first().and_then(|s| s.data.as_ref()) else { return 0 };
    let mut done = 0u32;
    for _ in 0..rounds {
        let Some(plan) = data.body_plan(black_box(&case.version), METHOD, case.path.as_bytes()) else { return 0 };
        let (Ok(Some(up)), Ok(Some(down))) =
            (plan.request(black_box(&case.client_body)), plan.response(black_box(&case.upstream_body)))
        else {
            return 0;
        };
        black_box((up, down));
        done += 1;
    }
    done
}
