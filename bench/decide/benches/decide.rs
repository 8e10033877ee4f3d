//! The decision path alone, natively: reading the host's header map, `Request::new` and
//! `decide` over the benchmark's mix
//! with the demo catalog. Envoy and V8 are not involved; see BENCHMARKS.md for those.

use criterion::{criterion_group, criterion_main, Criterion};
use meshver_bench_mix::load_mix;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let catalog_json = std::fs::read(root.join("examples/catalog.json")).expect("examples/catalog.json");
    let catalog = meshver::config::load(&catalog_json).expect("the demo catalog loads");
    let mix = load_mix(&root.join("bench/mix.json")).expect("bench/mix.json");
    // Fixed instant: 2026-07-01, after the v1 deprecation and before its sunset.
    let now = 1_782_864_000;

    let mut group = c.benchmark_group("decide");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    // The whole mix in one iteration: per request, divide by the mix's length (printed below).
    group.bench_function(format!("mix of {} requests", mix.len()), |b| {
        b.iter(|| {
            for request in &mix {
                let headers = meshver::header_map::parse(black_box(&request.wire)).unwrap_or_default();
                let parsed = meshver::request::Request::new(&headers);
                black_box(meshver::resolve::decide(&catalog, &parsed, now));
            }
        })
    });
    for request in &mix {
        group.bench_function(&request.name, |b| {
            b.iter(|| {
                let headers = meshver::header_map::parse(black_box(&request.wire)).unwrap_or_default();
                let parsed = meshver::request::Request::new(&headers);
                black_box(meshver::resolve::decide(&catalog, &parsed, now))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
