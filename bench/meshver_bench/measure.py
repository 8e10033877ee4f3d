"""The measurements: CPU per request, throughput at saturation, latency at a fixed rate, RSS.

Every front Envoy is the harness's Envoy pinned to ENVOY_CPU with one worker; the load
generators (wrk, bench/openloop) run on LOADGEN_CPU. CPU and memory are read from /proc
(reading costs Envoy nothing); request counts from Envoy's own `http.bench.*` stats.
"""

import json
import os
import shutil
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from .arms import url_of
from .env import (BODY_WASM_BENCH, CRITERION, DECIDE_WASM, ENVOY_CPU, LOADGEN_CPU, OPENLOOP, ROOT, harness, log,
                  run, start_envoy)

# The fixed-count CPU run of each round is sent in this many bursts, alternating between arms.
BURSTS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- reading an Envoy

def cpu_seconds(envoy):
    """utime + stime of the Envoy process (/proc counts in ticks of 1/CLK_TCK s)."""
    fields = Path(f"/proc/{envoy.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(envoy):
    pages = int(Path(f"/proc/{envoy.proc.pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


def counter(envoy, name):
    text = harness.http1("GET", f"{envoy.admin_url}/stats?filter=^{name}$", timeout=5).body.decode()
    m = re.search(rf"^{re.escape(name)}: (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def counts(envoy, requests="total"):
    """Envoy's CPU seconds, then its listener's requests (`downstream_rq_<requests>`) and 2xx,
    4xx, 5xx answers (admin requests are not counted in the listener's http.bench stats)."""
    names = (requests, "2xx", "4xx", "5xx")
    return [cpu_seconds(envoy)] + [counter(envoy, f"http.bench.downstream_rq_{n}") for n in names]


# ---------------------------------------------------------------- load generators

def wrk_cmd(url, script, connections, duration):
    return ["taskset", "-c", LOADGEN_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "2s",
            "-s", str(script), url]


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, total, errors


def warm_up(url, scripts, connections):
    """1 s of wrk: V8 tiers the module up, connections open."""
    run(wrk_cmd(url, scripts["wrk"], connections, 1), 30)


def _threads(pid):
    """How many threads process `pid` runs (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def send_count(envoy, url, script, connections):
    """Runs a count-limited wrk script to its end. wrk's main thread sleeps for the whole -d
    even after its worker stopped at the count, so wrk is stopped as soon as its worker thread
    has ended, or Envoy has gone idle (both read from /proc, which costs Envoy nothing)."""
    gen = subprocess.Popen(wrk_cmd(url, script, connections, 60), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        start = last = cpu_seconds(envoy)
        began = time.monotonic()
        saw_worker = False
        while time.monotonic() < began + 60 and gen.poll() is None:
            time.sleep(0.1)
            # taskset execs wrk: the pid is wrk's. Its worker ends when the script stops it;
            # a worker that ended before the first look is recognised after 0.5 s.
            threads = _threads(gen.pid)
            saw_worker = saw_worker or threads > 1
            if threads <= 1 and (saw_worker or time.monotonic() - began > 0.5):
                break
            now_cpu = cpu_seconds(envoy)
            if now_cpu == last and now_cpu > start:
                break
            last = now_cpu
    finally:
        # The harness's stop: the signal, then kill after the grace time.
        harness._stop_process(gen, signal.SIGINT, 5)


def send_h2_burst(url, runs):
    """Runs one burst of HTTP/2 requests: every kind's h2load run (mix.h2load_runs, its URL a
    path on `url`) at once, to their ends. Returns the problems (a run failed, or did not send
    every request)."""
    procs = [subprocess.Popen(["taskset", "-c", LOADGEN_CPU, *cmd[:-1], url + cmd[-1]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for cmd in runs]
    problems = []
    for cmd, proc in zip(runs, procs):
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            harness._stop_process(proc, signal.SIGINT, 5)
            problems.append(f"h2load {cmd[-1]} did not end in 60 s")
            continue
        # (h2load counts a 4xx answer as failed: the statuses are Envoy's to count.)
        sent = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, \d+ succeeded, \d+ failed, 0 errored", out)
        if proc.returncode != 0 or not sent or len(set(sent.groups())) != 1:
            problems.append(f"h2load {cmd[-1]}: exit {proc.returncode}: {out[-300:]}")
    return problems


# ---------------------------------------------------------------- the steps of a round

def cpu_per_request(configs, arms, scripts, connections, requests="total"):
    """(1) CPU per request of every arm over a fixed number of requests, sent in BURSTS that
    alternate between the arms (every arm's Envoy up, all on the Envoy CPU, one loaded at a
    time), so that a slow spell of the shared machine falls on every arm alike. Each Envoy is
    read once before its first burst and once after its last: /proc counts CPU in 10 ms ticks,
    and one reading per burst would add that rounding eight times.

    scripts: per arm, {"wrk": its requests, "wrk_burst": the same stopping after count / BURSTS
    answers}, or {"h2_burst": h2load runs sending one burst over HTTP/2 (mix.h2load_runs)}.
    requests: the Envoy counter that counts them (`completed` leaves out the few requests cut
    off when wrk stops, which matters when each carries a large body)."""
    return cpu_per_request_each(configs, arms, [scripts], connections, requests)[0]


def cpu_per_request_each(configs, arms, scripts_each, connections, requests="total"):
    """cpu_per_request for each of several sets of scripts (each: per arm, as there) in turn,
    on the same Envoys, started and warmed up (with the first set) once."""
    fronts = {}
    try:
        for arm in arms:
            fronts[arm] = start_envoy(f"cpu-{arm}", configs[arm], ENVOY_CPU)
        for arm in arms:
            warm_up(url_of(configs[arm]), scripts_each[0][arm], connections)
        results = []
        for scripts in scripts_each:
            before = {arm: counts(front, requests) for arm, front in fronts.items()}
            for burst in range(BURSTS):
                for arm in arms[burst % len(arms):] + arms[:burst % len(arms)]:
                    if "h2_burst" in scripts[arm]:
                        for problem in send_h2_burst(url_of(configs[arm]), scripts[arm]["h2_burst"]):
                            log(f"  WARNING: arm {arm}: {problem}")
                    else:
                        send_count(fronts[arm], url_of(configs[arm]), scripts[arm]["wrk_burst"], connections)
            result = {}
            for arm, front in fronts.items():
                cpu, n, s2xx, s4xx, s5xx = (b - a for a, b in zip(before[arm], counts(front, requests)))
                result[arm] = {"cpu_us_per_req": cpu / n * 1e6, "cpu_requests": n, "status_2xx": s2xx,
                               "status_4xx": s4xx, "status_5xx": s5xx}
            results.append(result)
        return results
    finally:
        for front in fronts.values():
            front.stop()


def saturation_and_latency(arm, config, args, scripts):
    """(2) Throughput at saturation with RSS idle and under load, then (3) latency at a fixed
    open-loop rate, of one arm's Envoy started alone."""
    front = start_envoy(f"front-{arm}", config, ENVOY_CPU)
    try:
        url = url_of(config)
        warm_up(url, scripts, args.connections)
        time.sleep(0.5)
        rss_idle = rss_mb(front)

        # Throughput at saturation, and memory under load.
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.wait(0.2):
                samples.append(rss_mb(front))
        sampler = threading.Thread(target=sample)
        c0, t0 = cpu_seconds(front), time.monotonic()
        sampler.start()
        out = run(wrk_cmd(url, scripts["wrk"], args.connections, args.duration), args.duration + 30)
        stop.set()
        sampler.join()
        busy = (cpu_seconds(front) - c0) / (time.monotonic() - t0)
        rps, total, errors = parse_wrk(out.stdout)

        # Latency at a fixed open-loop rate.
        lat = json.loads(run(["taskset", "-c", LOADGEN_CPU, str(OPENLOOP), url.removeprefix("http://"),
                              str(scripts["raw"]), str(args.rate), str(args.latency_count), "8"],
                             args.latency_count / args.rate + 30).stdout)
        return {"rps": rps, "wrk_total": total, "wrk_errors": errors,
                "envoy_core_busy": busy, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                "p999_us": lat["p999_us"], "latency_errors": lat["errors"], "latency_statuses": lat["statuses"],
                "achieved_rate": lat["achieved_rate"], "rss_idle_mb": rss_idle,
                "rss_load_mb": max(samples) if samples else rss_mb(front),
                "critical_log_lines": front.critical_lines()[:5]}
    finally:
        front.stop()


def rss_per_worker(arm, config, args, scripts, rss_one_worker):
    """(4) RSS with two workers minus RSS with one (both after the same warm-up): what each
    further worker costs, without the main thread's one-off share (for wasm: its own VM)."""
    front = start_envoy(f"mem-{arm}", config, f"{ENVOY_CPU},{LOADGEN_CPU}", concurrency=2)
    try:
        warm_up(url_of(config), scripts, args.connections)
        time.sleep(0.5)
        return rss_mb(front) - rss_one_worker
    finally:
        front.stop()


# ---------------------------------------------------------------- the decision path alone

def criterion_ns(name_fragment):
    """Median estimate (ns) of a bench/decide criterion benchmark whose directory name contains
    the fragment (as `make bench` left it), or None."""
    for d in sorted(CRITERION.glob("*")) if CRITERION.exists() else []:
        if name_fragment in d.name:
            return criterion_median_ns(d)
    return None


def criterion_median_ns(bench_dir):
    """Median estimate (ns) of the criterion benchmark whose results are in `bench_dir`, or
    None if it has not run."""
    estimates = bench_dir / "new/estimates.json"
    if not estimates.exists():
        return None
    return json.loads(estimates.read_text())["median"]["point_estimate"]


def in_v8(module, calls):
    """Functions of a module compiled from meshver's core, timed by node (V8) with bench/v8.mjs:
    {label: ns per unit}. calls: [{"label", "fn", "args", "rounds"}]. None without node or the
    module."""
    node = shutil.which("node")
    if not node or not module.exists():
        return None
    done = run(["taskset", "-c", ENVOY_CPU, node, str(ROOT / "bench/v8.mjs"), str(module), json.dumps(calls)], 300)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None


def decide_in_v8():
    """bench/decide-wasm in V8: the decision path inside the VM, no host calls."""
    return in_v8(DECIDE_WASM, [{"label": f"{fn}_ns_per_request", "fn": fn, "rounds": 20000}
                               for fn in ("bench_decide", "bench_decide_with_map")])


def body_in_v8(spec):
    """bench/body-wasm in V8: the data engine inside the VM on the body arms' bodies, no host
    calls. {"<steps>-<size>": ns per request (plan, request upgrade, response walk-back)}."""
    calls = []
    for c, client in enumerate(spec.data["clients"]):
        for s, size in enumerate(spec.data["sizes"]):
            # About 50 ms per timed call, from the engine's ~200 MB/s natively.
            rounds = max(4, 25_000_000 // (2 * size["bytes"] * 5))
            calls.append({"label": f"{client['steps']}-{size['name']}", "fn": "bench_body", "args": [c, s],
                          "rounds": rounds})
    return in_v8(BODY_WASM_BENCH, calls)
