//! `openloop`: sends a fixed number of HTTP/1.1 requests at a fixed rate (open loop) over a
//! few keep-alive connections to one loopback address, and prints latency percentiles as
//! one JSON line. Standard library only, so it builds in seconds.
//!
//! Request `i` is due at `start + i / rate`, whatever happened to earlier requests; each
//! connection sends every `connections`-th request. Latency counts from the moment a
//! request was due when the server made it late (its connection was still busy with the
//! previous answer), and from the moment it was sent otherwise, so the generator's own
//! sleep jitter is not charged to the server, while queueing behind a slow answer is
//! (no coordinated omission).
//!
//! Usage: openloop ADDR REQUESTS_FILE RATE COUNT CONNECTIONS
//! REQUESTS_FILE holds raw requests without bodies, each ending in an empty line (CRLF
//! CRLF); they are sent in turn.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Sample {
    latency_ns: u64,
    status: u16,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: openloop ADDR REQUESTS_FILE RATE COUNT CONNECTIONS");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let raw = std::fs::read(&args[2]).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", args[2])));
    let rate: f64 = args[3].parse().unwrap_or_else(|_| fail("RATE must be a number"));
    let count: usize = args[4].parse().unwrap_or_else(|_| fail("COUNT must be a number"));
    let connections: usize = args[5].parse().unwrap_or_else(|_| fail("CONNECTIONS must be a number"));
    let requests = split_requests(&raw);
    if requests.is_empty() || rate <= 0.0 || connections == 0 {
        fail("need at least one request, a positive rate and at least one connection");
    }
    // Bounded in time as well as count: the planned duration plus a grace of 10 s.
    let planned = Duration::from_secs_f64(count as f64 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + planned + Duration::from_secs(10);

    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let (addr, requests) = (addr.clone(), requests.clone());
            std::thread::spawn(move || run_worker(&addr, &requests, w, connections, count, rate, start, deadline))
        })
        .collect();
    let mut samples = Vec::with_capacity(count);
    let mut errors = 0usize;
    for worker in workers {
        let (s, e) = worker.join().unwrap_or_else(|_| fail("a worker panicked"));
        samples.extend(s);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_ns).collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
        latencies[at.min(latencies.len() - 1)] as f64 / 1000.0
    };
    let mut statuses = std::collections::BTreeMap::new();
    for s in &samples {
        *statuses.entry(s.status).or_insert(0usize) += 1;
    }
    let statuses: Vec<String> = statuses.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "{{\"sent\":{count},\"answered\":{},\"errors\":{errors},\"rate\":{rate},\"achieved_rate\":{:.1},\
         \"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"statuses\":{{{}}}}}",
        samples.len(),
        samples.len() as f64 / elapsed,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0),
        statuses.join(",")
    );
}

fn fail(message: &str) -> ! {
    eprintln!("openloop: {message}");
    std::process::exit(2);
}

fn split_requests(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(at) = find(rest, b"\r\n\r\n") {
        out.push(rest[..at + 4].to_vec());
        rest = &rest[at + 4..];
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[allow(clippy::too_many_arguments)]
fn run_worker(
    addr: &str,
    requests: &[Vec<u8>],
    worker: usize,
    connections: usize,
    count: usize,
    rate: f64,
    start: Instant,
    deadline: Instant,
) -> (Vec<Sample>, usize) {
    let mut samples = Vec::with_capacity(count / connections + 1);
    let mut errors = 0;
    let mut conn: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut previous_done = start;
    let mut i = worker;
    while i < count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        }
        // Late because the server still held this connection: count from when it was due.
        let base = if previous_done > due { due } else { Instant::now() };
        let request = &requests[i % requests.len()];
        let answer = conn.take().or_else(|| connect(addr)).and_then(|mut stream| {
            let (status, keep_alive) = exchange(&mut stream, request, &mut buf)?;
            Some((keep_alive.then_some(stream), status))
        });
        let done = Instant::now();
        match answer {
            Some((stream, status)) => {
                samples.push(Sample { latency_ns: (done - base).as_nanos() as u64, status });
                // Envoy closes an HTTP/1.1 connection after a 400 it answers itself: the next
                // request then opens a new one, as any client would.
                conn = stream;
            }
            None => errors += 1,
        }
        previous_done = done;
        i += connections;
    }
    (samples, errors)
}

fn connect(addr: &str) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(stream)
}

/// Sends one request and reads one answer (Content-Length bodies only): the status code,
/// and whether the connection stays open.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> Option<(u16, bool)> {
    stream.write_all(request).ok()?;
    let mut filled = 0;
    let header_end = loop {
        let n = stream.read(&mut buf[filled..]).ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        if let Some(at) = find(&buf[..filled], b"\r\n\r\n") {
            break at + 4;
        }
        if filled == buf.len() {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let keep_alive = !head.to_ascii_lowercase().contains("\r\nconnection: close");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(0);
    let mut body_read = filled - header_end;
    while body_read < length {
        let n = stream.read(buf).ok()?;
        if n == 0 {
            return None;
        }
        body_read += n;
    }
    Some((status, keep_alive))
}
