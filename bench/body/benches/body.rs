//! The data engine alone, natively, on the bodies of `make bench`'s body arms
//! (bench/body.json): the body plan of a request, the request upgrade and the response
//! walk-back, for a client one change step (3 → 4) and three steps (1 → 2 → 3 → 4) from the
//! upstream, with JSON bodies of about 1 KB, 16 KB and 128 KB. Envoy and V8 are not involved;
//! bench/run.py measures the same bodies inside Envoy (BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meshver::data::ServiceData;
use serde_json::Value;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The POST the body arms send for one body size (`/orders/1k`).
const METHOD: &[u8] = b"POST";

/// One order in the shape of `version`, with `count` items, as compact JSON (members in key
/// order, as bench/run.py writes it).
fn body(spec: &Value, version: &str, count: usize) -> Vec<u8> {
    let shape = &spec["shapes"][version];
    let mut order = shape["head"].clone();
    let items = (0..count)
        .map(|id| {
            let mut item = shape["item"].clone();
            item["id"] = id.into();
            item
        })
        .collect();
    order["items"] = Value::Array(items);
    serde_json::to_vec(&order).expect("a JSON value serialises")
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec: Value = serde_json::from_slice(&std::fs::read(root.join("bench/body.json")).expect("bench/body.json"))
        .expect("bench/body.json is JSON");
    let catalog_json = serde_json::to_vec(&spec["catalog"]).expect("the catalog serialises");
    let catalog = meshver::config::load(&catalog_json).expect("the body arms' catalog loads");
    let data: &ServiceData = catalog.services[0].data.as_ref().expect("the shop service has a data section");
    let upstream_version = spec["upstream_version"].as_str().expect("upstream_version");
    let path = spec["path"].as_str().expect("path");

    let mut group = c.benchmark_group("body");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    for client in spec["clients"].as_array().expect("clients") {
        let version = client["version"].as_str().expect("a client's version");
        let steps = format!("{}step", client["steps"].as_u64().expect("a client's steps"));
        for size in spec["sizes"].as_array().expect("sizes") {
            let (name, count) = (size["name"].as_str().expect("name"), size["count"].as_u64().expect("count"));
            let request_path = format!("{path}/{name}");
            let plan =
                data.body_plan(version, METHOD, request_path.as_bytes()).expect("the client's version has a plan");
            let (client_body, upstream_body) =
                (body(&spec, version, count as usize), body(&spec, upstream_version, count as usize));
            // The engine and bench/body.json agree: each shape walks to the other exactly.
            assert_eq!(plan.request(&client_body).ok().flatten().as_ref(), Some(&upstream_body), "{steps} {name} up");
            assert_eq!(
                plan.response(&upstream_body).ok().flatten().as_ref(),
                Some(&client_body),
                "{steps} {name} down"
            );

            if name == spec["sizes"][0]["name"] {
                // The plan does not depend on the body: once per client.
                group.throughput(Throughput::Elements(1));
                group.bench_function(BenchmarkId::new(format!("plan-{steps}"), name), |b| {
                    b.iter(|| black_box(data.body_plan(black_box(version), METHOD, request_path.as_bytes()).is_some()))
                });
            }
            group.throughput(Throughput::Bytes(client_body.len() as u64));
            if client["steps"] == 1 {
                // What any engine over serde_json values pays before its ops: parse, serialise.
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
