//! The data engine alone, natively, on the bodies of `make bench`'s body arms
//! (bench/body.json): the body plan of a request, the request upgrade and the response
//! walk-back, for a client one change step (3 → 4) and three steps (1 → 2 → 3 → 4) from the
//! upstream, with JSON bodies of about 1 KB, 16 KB and 128 KB; and, as the floor under any
//! engine over serde_json values, parsing and serialising a body with no ops. Envoy and V8 are
//! not involved; bench/run.py measures the same bodies inside Envoy (BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meshver_bench_bodies::BodySpec;
use serde_json::Value;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The method of the body arms' requests.
const METHOD: &[u8] = b"POST";

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec = BodySpec::parse(&std::fs::read(root.join("bench/body.json")).expect("bench/body.json"))
        .expect("bench/body.json");
    let catalog = meshver::config::load(&spec.catalog_json()).expect("the body arms' catalog loads");
    let data = catalog.services[0].data.as_ref().expect("the body arms' service has a data section");
    let sizes = spec.sizes();

    let mut group = c.benchmark_group("body");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    for client in spec.clients() {
        let steps = format!("{}step", client.steps);
        for (i, size) in sizes.iter().enumerate() {
            let path = spec.path(size);
            let plan = data.body_plan(&client.version, METHOD, path.as_bytes()).expect("the client has a plan");
            let client_body = spec.body(&client.version, size.count);
            let upstream_body = spec.body(spec.upstream_version(), size.count);
            // The engine and bench/body.json agree: each shape walks to the other exactly.
            let name = &size.name;
            assert_eq!(plan.request(&client_body).ok().flatten().as_ref(), Some(&upstream_body), "{steps} {name} up");
            assert_eq!(
                plan.response(&upstream_body).ok().flatten().as_ref(),
                Some(&client_body),
                "{steps} {name} down"
            );

            if i == 0 {
                // The plan does not depend on the body: once per client.
                group.throughput(Throughput::Elements(1));
                group.bench_function(BenchmarkId::new(format!("plan-{steps}"), name), |b| {
                    b.iter(|| black_box(data.body_plan(black_box(&client.version), METHOD, path.as_bytes()).is_some()))
                });
            }
            group.throughput(Throughput::Bytes(client_body.len() as u64));
            if client.steps == 1 {
                group.bench_with_input(BenchmarkId::new("parse-serialise", name), &client_body, |b, body| {
                    b.iter(|| serde_json::from_slice::<Value>(black_box(body)).map(|v| serde_json::to_vec(&v)))
                });
            }
            group.bench_with_input(BenchmarkId::new(format!("request-{steps}"), name), &client_body, |b, body| {
                b.iter(|| plan.request(black_box(body)))
            });
            group.throughput(Throughput::Bytes(upstream_body.len() as u64));
            group.bench_with_input(BenchmarkId::new(format!("response-{steps}"), name), &upstream_body, |b, body| {
                b.iter(|| plan.response(black_box(body)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
