#!/usr/bin/env python3
"""`make bench`: meshver against native Envoy routing and a Lua filter doing the same work.

Four arms behind the same Envoy binary, in front of the same upstream (a second Envoy
answering with `direct_response`, one listener per deployment, that names itself and
echoes the path and version it saw):

  A   native: route config alone (regex header/path/query matches, regex_rewrite,
      header_mutation for the query parameter, direct_response for rejects)
  B   lua: envoy.filters.http.lua running bench/lua/meshver.lua on the demo catalog
  C   meshver: target/wasm32-wasip1/release/meshver.wasm on V8, the demo catalog
  C0  empty wasm: arm A's routes behind a proxy-wasm filter that does nothing
  N   native meshver: target/dynamic-modules/libmeshver.so as Envoy's dynamic module filter
      (`meshver render envoy --host native`), the demo catalog
  N0  empty native module: arm A's routes behind the dynamic module filter loading a module
      that does nothing (bench/empty-native)

Each arm's answers to every kind of request in bench/mix.json are checked first, over HTTP/1.1
and HTTP/2 (status, deployment reached, the same one for a sticky key, path and version header
it saw, lifecycle headers, problem+json, a rejected gRPC call's gRPC status); then, in rounds
with the arms interleaved, the front Envoy (one worker, pinned to CPU 0; load generators and
upstream on CPU 1) is measured for CPU per request over a fixed number of requests (HTTP/1.1,
then HTTP/2), throughput at saturation, latency at a fixed open-loop rate, and RSS.

The body arms (bench/body.json; bench/meshver_bench/body.py) do the same for JSON bodies of
about 1 KB, 16 KB and 128 KB: plain proxying (P), Envoy's transform filter doing the nearest
equivalent of one change (T), meshver with no body work (H), one change step (M1) and three
(M3). Their answers are checked too, then CPU per request is measured the same way, per size.

Results: bench/results/latest.json, and the tables between the markers in BENCHMARKS.md.
This file is the procedure; the parts are in bench/meshver_bench/ (arms, body, catalog, mix,
measure, report). BENCHMARKS.md describes the method.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from meshver_bench import body, catalog, measure, mix, report
from meshver_bench.arms import ARM_NAMES, ARMS, Arms, upstream_config, url_of
from meshver_bench.env import (BODY_WASM, EMPTY_NATIVE, EMPTY_WASM, ENVOY_CPU, LOADGEN_CPU, MESHVER_CLI, MESHVER_WASM, MIX,
                               NATIVE_MODULE, OPENLOOP, RESULTS, harness, log, pin_native_modules, run,
                               start_envoy)

# Counts of a full run, and of --quick (one round, tiny counts: checks that the bench works,
# its figures mean little). body_counts: requests per body arm and round, for each size.
FULL = {"rounds": 5, "count": 40000, "duration": 4, "latency_count": 20000,
        "body_counts": {"1k": 16000, "16k": 4000, "128k": 800}}
QUICK = {"rounds": 1, "count": 4000, "duration": 1, "latency_count": 2000,
         "body_counts": {"1k": 1600, "16k": 400, "128k": 80}}
PARTS = ("header", "body")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, help=f"rounds (default {FULL['rounds']})")
    p.add_argument("--count", type=int, help=f"requests of the fixed-count CPU run (default {FULL['count']})")
    p.add_argument("--duration", type=int, help=f"seconds of the saturation run (default {FULL['duration']})")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=int, default=2000, help="open-loop rate (req/s) of the latency run")
    p.add_argument("--latency-count", type=int, help=f"requests of the latency run (default {FULL['latency_count']})")
    p.add_argument("--quick", action="store_true",
                   help="a quick check that the bench works: " + ", ".join(f"{k} {v}" for k, v in QUICK.items())
                        + " unless given; results go to bench/results/experiment.json only")
    p.add_argument("--check-only", action="store_true", help="check every arm's answers, no timing")
    p.add_argument("--report", type=Path, help="only re-render the results of a saved run (bench/results/latest.json)")
    p.add_argument("--arms", default=",".join(ARMS), help="arms to run (A is always run: ratios need it)")
    p.add_argument("--meshver-wasm", type=Path, default=None,
                   help="another build of the filter, to compare (the body arms take the meshver_body.wasm beside it)")
    p.add_argument("--only", choices=PARTS, help="run only the header arms (A, B, C0, C) or only the body arms")
    p.add_argument("--body-connections", type=int, default=4,
                   help="connections of the body arms' load (few: wrk's stop cuts off one request per connection)")
    p.add_argument("--by-kind", action="store_true",
                   help="only CPU per request for each kind of the mix alone, the forwarded and the rejected "
                        "kinds, and the whole mix (--rounds rounds of --count requests per arm); prints a table")
    args = p.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def write_scripts(work, reqs, count):
    """The load generators' inputs for these requests: the wrk script sending them in turn,
    the same stopping after one burst of the CPU step, and the raw requests for openloop; and
    the HTTP/2 step's burst, an h2load run per kind (each of the URLs a path to put after the
    arm's own)."""
    scripts = {"wrk": work / "mix.lua", "wrk_burst": work / "mix-burst.lua", "raw": work / "mix.http"}
    scripts["wrk"].write_text(mix.wrk_script(reqs))
    scripts["wrk_burst"].write_text(mix.wrk_script(reqs, stop_after=count // measure.BURSTS))
    scripts["raw"].write_bytes(mix.raw_requests(reqs))
    per_kind = max(1, count // measure.BURSTS // len(reqs))
    h2 = {"wrk": scripts["wrk"], "h2_burst": mix.h2load_runs(reqs, "", per_kind)}
    return scripts, h2


def machine():
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "?")
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    envoy_version = run([str(harness.envoy_binary()), "--version"], 30).stdout.strip().split("version:")[-1].strip()
    return (f"{os.cpu_count()} CPUs ({cpu_model}), {mem_gib:.1f} GiB RAM, Linux {os.uname().release}, "
            f"Envoy {envoy_version}")


def check_arms(configs, arms, reqs, lifecycles):
    """Each arm alone answers every kind as the mix expects, over HTTP/1.1 and HTTP/2; exits
    before any timing if not."""
    failures = []
    for arm in arms:
        front = start_envoy(f"check-{arm}", configs[arm], ENVOY_CPU)
        try:
            problems = [p for http2 in (False, True)
                        for p in mix.check_answers(arm, url_of(configs[arm]), reqs, lifecycles, http2)]
        finally:
            front.stop()
        log(f"check arm {arm} ({ARM_NAMES[arm]}): {'ok' if not problems else 'WRONG'} "
            f"({len(reqs)} kinds, HTTP/1.1 and HTTP/2)")
        failures += problems
    if failures:
        for f in failures:
            log("  " + f)
        sys.exit("some arm answers wrongly: no timing")


def one_round(r, configs, arms, args, scripts, h2_scripts):
    """(1) CPU per request of all arms in alternating bursts, over HTTP/1.1 then over HTTP/2;
    then, one arm at a time in the round's order, (2) saturation and (3) latency, (4) RSS per
    further worker."""
    order = arms[r % len(arms):] + arms[:r % len(arms)]
    result, h2 = measure.cpu_per_request_each(configs, arms, [{arm: scripts for arm in arms},
                                                              {arm: h2_scripts for arm in arms}], args.connections)
    for arm in order:
        m = result[arm]
        m.update({f"{key}_h2": value for key, value in h2[arm].items()})
        m.update(measure.saturation_and_latency(arm, configs[arm], args, scripts))
        m["rss_per_worker_mb"] = measure.rss_per_worker(arm, configs[arm], args, scripts, m["rss_idle_mb"])
        log(f"round {r + 1}/{args.rounds} arm {arm:2}: cpu {m['cpu_us_per_req']:6.2f} µs/req "
            f"(HTTP/2 {m['cpu_us_per_req_h2']:6.2f})  "
            f"{m['rps']:8.0f} req/s (core {m['envoy_core_busy'] * 100:3.0f}%)  p50 {m['p50_us']:6.0f} µs  "
            f"p99 {m['p99_us']:6.0f} µs  rss {m['rss_idle_mb']:.1f}/{m['rss_load_mb']:.1f} MiB "
            f"(+{m['rss_per_worker_mb']:.1f} per worker)  "
            f"2xx/4xx/5xx {m['status_2xx']}/{m['status_4xx']}/{m['status_5xx']}")
        if m["status_5xx"] or m["status_5xx_h2"] or m["wrk_errors"] or m["latency_errors"] or m["critical_log_lines"]:
            log(f"  WARNING: errors in arm {arm}: {m['status_5xx']} 5xx ({m['status_5xx_h2']} over HTTP/2), "
                f"{m['wrk_errors']} wrk errors, "
                f"{m['latency_errors']} open-loop errors, {m['critical_log_lines']}")
    return result


def body_round(r, spec, configs, args, scripts):
    """The body arms' CPU per request, size after size on the same Envoys, as one_round's
    first step measures the header arms (alternating bursts); the arms' order rotated each
    round."""
    arms = body.BODY_ARMS[r % len(body.BODY_ARMS):] + body.BODY_ARMS[:r % len(body.BODY_ARMS)]
    each = measure.cpu_per_request_each(configs, arms, [scripts[size] for size in spec.sizes],
                                        args.body_connections, "completed")
    result = dict(zip(spec.sizes, each))
    for size in spec.sizes:
        log(f"round {r + 1}/{args.rounds} body {size:>4}: " + "  ".join(
            f"{arm} {result[size][arm]['cpu_us_per_req']:.1f}" for arm in body.BODY_ARMS) + " µs/req")
        for arm, m in result[size].items():
            if m["status_4xx"] or m["status_5xx"]:
                log(f"  WARNING: body arm {arm} {size}: {m['status_4xx']} 4xx, {m['status_5xx']} 5xx")
    return result


def by_kind(mix_data, configs, arms, args, work):
    """CPU per request of each arm for each kind alone, the forwarded kinds, the rejected kinds
    and the whole mix: where an arm's cost comes from. Each group is measured as the main run's
    CPU step measures the whole mix (measure.cpu_per_request), --rounds times; medians."""
    kinds = mix_data["kinds"]
    groups = [(k["name"], [k]) for k in kinds]
    groups += [("forwarded kinds", [k for k in kinds if k["expect"]["status"] == 200]),
               ("rejected kinds", [k for k in kinds if k["expect"]["status"] != 200]),
               ("whole mix", kinds)]
    rows = []
    for name, group in groups:
        scripts, _ = write_scripts(work, mix.requests(mix_data, group), args.count)
        cpu = {arm: [] for arm in arms}
        for _ in range(args.rounds):
            per_arm = {arm: scripts for arm in arms}
            for arm, measured in measure.cpu_per_request(configs, arms, per_arm, args.connections).items():
                cpu[arm].append(measured["cpu_us_per_req"])
        rows.append((name, cpu))
        log(report.by_kind_row(name, cpu, arms))
    return report.by_kind_table(rows, arms)


def main():
    args = parse_args()
    if args.report:
        return report.publish(json.loads(args.report.read_text()), write=args.report.name == "latest.json")
    wasm = (args.meshver_wasm or MESHVER_WASM).resolve()
    body_wasm = wasm.with_name(BODY_WASM.name)
    parts = (args.only,) if args.only else ("header",) if args.by_kind else PARTS
    arms = [a for a in ARMS if a == "A" or a in args.arms.split(",")] if "header" in parts else []
    needed = {"header": (wasm, EMPTY_WASM, OPENLOOP, MESHVER_CLI) + ((NATIVE_MODULE,) if "N" in arms else ())
              + ((EMPTY_NATIVE,) if "N0" in arms else ()),
              "body": (wasm, body_wasm, MESHVER_CLI)}
    for path in {p for part in parts for p in needed[part]}:
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench` (it builds it)")
    # The published run before this one: the header arms must not move with the body arms.
    previous = json.loads((RESULTS / "latest.json").read_text()) if (RESULTS / "latest.json").exists() else None

    # What meshver says about the catalog, and the requests.
    compiled = catalog.compiled_catalog()
    services = catalog.services(compiled)
    mix_data = json.loads(MIX.read_text())
    reqs = mix.requests(mix_data)
    work = Path(tempfile.mkdtemp(prefix="meshver-bench-"))
    scripts, h2_scripts = write_scripts(work, reqs, args.count)
    spec = body.Spec()
    body_arms = body.BodyArms(spec, wasm, body_wasm, work)
    body_scripts = body.write_scripts(spec, work, args.body_counts)

    # The native modules as they are now: a rebuild during the run changes no arm.
    native_modules = pin_native_modules(work / "dynamic-modules") if {"N", "N0"} & set(arms) else {}
    about = machine()
    log(f"machine: {about}")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    uptime_before = run(["uptime"], 5).stdout.strip()
    log(f"uptime before: {uptime_before}")

    # The upstreams (the header arms': one listener per deployment; the body arms': one
    # answering each size), and each arm's front Envoy in front of them.
    upstream_ports = {d["route"]: harness.free_port() for s in services for d in s["deployments"]}
    route_config, clusters = catalog.rendered_routes_and_clusters(upstream_ports, wasm)
    keyed = catalog.keyed_routes(route_config, compiled["route_header"])
    lifecycles = catalog.lifecycle_headers(compiled)
    native_filter = catalog.rendered_native_filter(upstream_ports, wasm) if {"N", "N0"} & set(arms) else None
    fronts = Arms(services, compiled["route_header"], route_config, keyed, clusters, wasm, native_filter)
    configs = {arm: fronts.front(arm) for arm in arms}
    body_port = harness.free_port()
    body_configs = body_arms.fronts(body_port) if "body" in parts else {}
    upstreams = []
    rounds, body_rounds = [], []
    try:
        if "header" in parts:
            upstreams.append(start_envoy("upstream", upstream_config(harness.free_port(), upstream_ports),
                                         LOADGEN_CPU))
            check_arms(configs, arms, reqs, lifecycles)
        if "body" in parts:
            problems = body.check_answers(spec, body_arms.fronts)
            for line in problems:
                log("  " + line)
            if problems:
                sys.exit("some body arm answers wrongly: no timing")
            upstreams.append(start_envoy("body-upstream", body.upstream_config(harness.free_port(), body_port, spec),
                                         LOADGEN_CPU))
        if args.check_only:
            return
        if args.by_kind:
            return print(by_kind(mix_data, configs, arms, args, work))
        if "header" in parts:
            rounds = [one_round(r, configs, arms, args, scripts, h2_scripts) for r in range(args.rounds)]
        if "body" in parts:
            body_rounds = [body_round(r, spec, body_configs, args, body_scripts) for r in range(args.rounds)]
    finally:
        for upstream in upstreams:
            upstream.stop()
        shutil.rmtree(work, ignore_errors=True)

    uptime_after = run(["uptime"], 5).stdout.strip()
    log(f"uptime after: {uptime_after}")
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "machine": about, "uptime_before": uptime_before, "uptime_after": uptime_after,
               "loadavg_before": load_before, "module_bytes": wasm.stat().st_size}
    if "header" in parts:
        mix_ns = measure.criterion_ns(f"mix of {len(reqs)} requests")
        results.update({"empty_module_bytes": EMPTY_WASM.stat().st_size,
                        "native_module_bytes": native_modules.get(NATIVE_MODULE.name, {}).get("bytes"),
                        "native_modules": native_modules,
                        "decide_ns_per_request": mix_ns / len(reqs) if mix_ns else None,
                        "decide_in_v8": measure.decide_in_v8(), "mix_kinds": len(reqs), "arms": arms,
                        "summary": report.summarize(rounds, arms), "rounds": rounds})
        if previous and "summary" in previous:
            results["previous"] = {"date": previous["date"], "summary": {"C": previous["summary"]["C"]}}
    if "body" in parts:
        results["body"] = report.body_results(spec, body_rounds, body_wasm)
    # Only a run of all header arms (and of all parts, or of one with --only) on the build
    # `make build` leaves is the published one; a run of one part keeps the other part's last
    # published results in latest.json.
    official = ("header" not in parts or len(arms) == len(ARMS)) and wasm == MESHVER_WASM.resolve() and not args.quick
    if official and previous and parts != PARTS:
        # The other part's figures are the previous run's: its date and load go with them.
        other = "body" if "header" in parts else "header"
        kept = report.part_of(previous, other)
        results = {**kept, **results}
    report.save(results, "latest.json" if official else "experiment.json")
    report.publish(results, write=official, parts=parts)


if __name__ == "__main__":
    main()
