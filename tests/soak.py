#!/usr/bin/env python3
"""Load and soak: the bench's request mix over many HTTP/1.1 and HTTP/2 connections at once
through the filter, then what must hold. `make soak` runs it for SOAK_SECONDS and writes its
figures into BENCHMARKS.md; tests/test_load.py runs a short version in `make test`.

The stack: one Envoy with two listeners rendered by `meshver render envoy`: `edge` serves the
demo catalog (examples/catalog.json), `served` the served demo (examples/catalog-served.json,
so the body filter too). Behind it, the bench's upstream (bench/meshver_bench/arms.py: a
second Envoy, a listener per deployment that names itself), here reading each request body
whole before it answers, and answering a JSON POST in user 2's shape so that the served
listener walks the answer back to user 1's.

The load: one h2load (Debian's nghttp2-client) per kind of request and protocol, closed loop,
its connections a share of the total. h2load sends one set of headers per run, hence a run
per kind; each run sends a fixed count, and runs follow each other until the time is up, so
that no request is ever cut off in flight and every count below is exact. The kinds:
  - every kind of bench/mix.json (the bench's mix: each source of a version, the default,
    gRPC, four rejects), each with the status the mix expects;
  - the mix's kinds that a line serves (weighted, more than one deployment) again with a sticky
    key (the catalog's sticky header), a new key for every run;
  - the served demo's JSON POSTs (examples/demo.py's DATA_CALLS on its served listener, sent as
    h2load's -d data file): user 1 bodies upgraded for 2.x and answers walked back (200), a body
    that breaks 2.1's contract (422), a body that is not JSON (400).

What must hold (check()):
  - before any load, each kind once answers as expected (the bench's mix.check_answers for the
    mix's kinds; status, problem type and the walked-back answer for the served calls);
  - every request's status is its kind's (h2load's per-request log), and every run ends with
    every request done (none errored, none timed out);
  - nothing lost: Envoy's listeners count exactly the requests sent, by status class; the
    upstreams' answers (the upstream Envoy's own counts, per group of deployments a kind may
    reach) plus the filter's own answers (its counters) are exactly what was sent;
  - Envoy's memory flat after the warm-up (RSS and tcmalloc's `server.memory_allocated`,
    sampled every second; MEMORY_GROWTH_BOUND says how flat);
  - nothing logged at critical level.
"""

import argparse
import collections
import copy
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import harness

sys.path.insert(0, str(harness.ROOT / "bench"))
sys.path.insert(0, str(harness.ROOT / "examples"))
import demo as demo_py  # noqa: E402  (the served demo's data calls)
import run as bench_run  # noqa: E402  (bench/run.py: its description of the machine)
from meshver_bench import arms as bench_arms  # noqa: E402  (the bench's upstream)
from meshver_bench import catalog as bench_catalog  # noqa: E402  (lifecycle headers of the compiled catalog)
from meshver_bench import measure as bench_measure  # noqa: E402  (RSS from /proc)
from meshver_bench import mix as bench_mix  # noqa: E402  (the bench's request mix and its answer check)
from meshver_bench.env import MIX  # noqa: E402

SERVED_CATALOG = harness.ROOT / "examples/catalog-served.json"
BENCHMARKS_MD = harness.ROOT / "BENCHMARKS.md"
MARKERS = ("<!-- soak-results:start -->", "<!-- soak-results:end -->")
PROTOCOLS = ("http1", "http2")
# Streams in flight per HTTP/2 connection (h2load -m); HTTP/1.1 sends one at a time (no pipelining).
H2_STREAMS = 4
# How long one h2load run of a kind lasts, about: its count is its last run's rate times this.
RUN_SECONDS = 4
# Memory may grow from the end of the warm-up to the end of the load by this much, no more, each
# end taken as the median of the samples of its last MEMORY_WINDOW seconds. Under a steady load,
# Envoy's own allocations (tcmalloc's server.memory_allocated) level off once its pools,
# connections and stats exist, and the filter's VMs keep their linear memory at its high-water
# mark; what still moves is what the requests in flight hold at the moment of a sample: a few
# MiB up and down from one second to the next on this machine (a median of five takes most of
# it out). A leak of MEMORY_GROWTH_BOUND / (requests after the warm-up) bytes per request or more
# crosses the bound: the report states that figure for each run.
MEMORY_GROWTH_BOUND = 8 * 2**20
# A run takes RUN_SECONDS at the rate the last one had: one still going after this long has
# stalled. Generous, because on this shared 2-CPU machine at full load the kernel has held a
# request of a loopback HTTP/1.1 connection for 30 s and more: sent by h2load, unacknowledged,
# not received by Envoy's socket, no retransmission (`ss` at the time; Envoy then held no request
# in flight). Such a run ends late, with every request answered; a stalled Envoy still fails it.
STALL_SECONDS = 180
MEMORY_WINDOW = 5


class Kind(NamedTuple):
    """One kind of request of the load, and what its answers must be."""

    name: str
    listener: str  # the front Envoy's listener it goes to: "edge" or "served"
    method: str
    path: str
    headers: tuple  # ((name, value), ...), host first
    body: bytes | None
    status: int
    deployments: frozenset  # the route keys that may answer it; empty: the filter answers
    sticky_header: str | None  # a sticky key goes in this header, a new one every run
    expect: dict  # the bench mix's expectation (mix kinds only): what mix.check_answers checks


# ---------------------------------------------------------------- the kinds

def load_kinds(edge_compiled, served_compiled):
    """The mix's kinds, their line kinds again with a sticky key, the served demo's data calls."""
    mix = json.loads(MIX.read_text())
    service_of = {d["route"]: s for s in edge_compiled["services"] for d in s["deployments"]}
    kinds = []
    for kind, method, path, headers in bench_mix.requests(mix):
        expect = kind["expect"]
        kinds.append(Kind(kind["name"], "edge", method, path, tuple(headers), None, expect["status"],
                          frozenset(expect.get("deployments", ())), None, expect))
    for kind in list(kinds):
        if len(kind.deployments) > 1:
            service = service_of[next(iter(kind.deployments))]
            kinds.append(kind._replace(name=f"{kind.name}+sticky", sticky_header=service["sticky"]["header"]))
    # The served catalog's user deployments answer every served call that goes on (all 2.x).
    served = frozenset(d["route"] for s in served_compiled["services"] for d in s["deployments"])
    for call in demo_py.DATA_CALLS:
        if call.port != demo_py.SERVED_PORT:
            continue
        status = 200 if call.answer == "1.x" else call.answer
        headers = (("host", mix["host"]), ("content-type", "application/json"))
        kinds.append(Kind(f"served POST {call.path} ({call.answer})", "served", "POST", call.path, headers,
                          call.body.encode(), status, served if status == 200 else frozenset(), None, {}))
    return kinds


def kind_headers(kind, run=0):
    """The headers of a kind's requests in its run number `run` (the sticky key changes per run)."""
    headers = list(kind.headers)
    if kind.sticky_header:
        headers.append((kind.sticky_header, f"load-{kind.name}-{run}"))
    return headers


# ---------------------------------------------------------------- the stack

def upstream_config(admin_port, ports):
    """The bench's upstream (one listener per deployment: direct_response 200 naming itself),
    which here also reads each request body whole first, as a service would (the buffer filter),
    and answers a JSON POST in user 2's shape (`result.account.full_name`), so that the served
    listener's response change has something to walk back."""
    config = bench_arms.upstream_config(admin_port, ports)
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"].insert(0, {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 1 << 20}})
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        answer = copy.deepcopy(routes[0])
        answer["match"] = {"prefix": "/", "headers": [
            {"name": ":method", "string_match": {"exact": "POST"}},
            {"name": "content-type", "string_match": {"exact": "application/json"}}]}
        answer["direct_response"]["body"]["inline_string"] = json.dumps(
            {"deployment": listener["name"], "result": {"account": {"full_name": "Ada Lovelace"}}})
        routes.insert(0, answer)
    return config


def access_logs_discarded(config):
    """The bootstrap with each listener's access log written to /dev/null instead of standard
    output: every line is still formatted (Envoy does the work an operator's Envoy does), but
    at thousands of requests a second it would fill the disk, and the harness keeps Envoy's
    output in memory."""
    config = copy.deepcopy(config)
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                for log in network_filter.get("typed_config", {}).get("access_log", []):
                    log["name"] = "envoy.access_loggers.file"
                    log["typed_config"] = {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": os.devnull, "log_format": log["typed_config"]["log_format"]}
    return config


class LoadStack:
    """The upstream Envoy, then the front Envoy on both catalogs; stop() stops both."""

    def __init__(self):
        self.catalogs = {"edge": json.loads(harness.DEMO_CATALOG.read_text()),
                         "served": json.loads(SERVED_CATALOG.read_text())}
        self.compiled = {name: harness.compiled_catalog(c) for name, c in self.catalogs.items()}
        routes = {d["route"] for c in self.compiled.values() for s in c["services"] for d in s["deployments"]}
        self.upstream = self.front = None
        try:
            ports = {route: harness.free_port() for route in sorted(routes)}
            config = upstream_config(harness.free_port(), ports)
            # The stat prefix of each deployment's listener on the upstream.
            self.upstream_prefixes = {
                listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"]
                for listener in config["static_resources"]["listeners"]}
            self.upstream = harness.Envoy(config, concurrency=1, name="load-upstream",
                                          log_level="warn", component_log_level=None)
            self.ports = {name: harness.free_port() for name in self.catalogs}
            front = harness.render_envoy(harness.free_port(), [
                {"name": name, "port": self.ports[name], "catalog": catalog}
                for name, catalog in self.catalogs.items()], ports)
            self.front = harness.Envoy(access_logs_discarded(front), concurrency=2, name="load-front",
                                       log_level="warn", component_log_level=None)
        except BaseException:
            self.stop()
            raise

    def url(self, listener):
        return f"http://127.0.0.1:{self.ports[listener]}"

    def stop(self):
        for envoy in (self.front, self.upstream):
            if envoy:
                envoy.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- answers before the load

def check_answers_once(stack, kinds):
    """Each kind once, over HTTP/1.1: the mix's kinds by the bench's own check (status,
    deployment, path and version the upstream saw, lifecycle headers, problem+json); each
    served call's status, its problem type, or its answer walked back to user 1's shape."""
    lifecycles = bench_catalog.lifecycle_headers(stack.compiled["edge"])
    edge = [({"name": k.name, "expect": k.expect}, k.method, k.path, kind_headers(k))
            for k in kinds if k.listener == "edge"]
    problems = bench_mix.check_answers("load", stack.url("edge"), edge, lifecycles)
    for kind in (k for k in kinds if k.listener == "served"):
        answer = harness.http1(kind.method, stack.url("served") + kind.path, kind_headers(kind), kind.body)
        where = f"{kind.name}: {answer.status} {answer.body[:200]!r}"
        if answer.status != kind.status:
            problems.append(f"{where}: status, want {kind.status}")
        elif answer.status == 200:
            account = (answer.json or {}).get("result", {}).get("account")
            if account != {"name": "Ada Lovelace"} or answer.header("x-upstream") not in kind.deployments:
                problems.append(f"{where}: not answered by {sorted(kind.deployments)} in user 1's shape")
        elif not (answer.json or {}).get("type", "").startswith("urn:meshver:problem:"):
            problems.append(f"{where}: not a meshver problem")
    return problems


# ---------------------------------------------------------------- the load generators

def h2load_binary():
    found = shutil.which("h2load")
    if not found:
        raise RuntimeError("h2load is not installed: `make soak` and `make test` install it "
                           "(apt-get install nghttp2-client)")
    return found


SUMMARY = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout")


class Driver(threading.Thread):
    """h2load runs of one kind over one protocol, one after another until `deadline` (each a
    fixed count, so that none is cut off), on `connections` connections. Keeps every request's
    status (h2load's per-request log; -1: the stream failed) and latency."""

    def __init__(self, h2load, kind, protocol, url, connections, deadline, workdir, stopping, in_flight):
        super().__init__(name=f"{kind.name} {protocol}", daemon=True)
        self.h2load, self.kind, self.protocol = h2load, kind, protocol
        self.url, self.connections, self.deadline = url, connections, deadline
        self.streams = H2_STREAMS if protocol == "http2" else 1
        self.workdir, self.stopping = workdir, stopping
        self.in_flight = in_flight  # () -> what Envoy holds in flight, for a run that does not end
        self.stalled = False
        workdir.mkdir()
        self.sent = self.runs = 0
        self.statuses = collections.Counter()
        self.latencies_us = collections.Counter()  # µs -> requests: exact, and small
        self.problems = []
        self.proc = None

    def command(self, count, log_file):
        cmd = [self.h2load, "-n", str(count), "-c", str(self.connections), "-m", str(self.streams),
               "--log-file", str(log_file)]
        if self.protocol == "http1":
            cmd.append("--h1")
        for name, value in kind_headers(self.kind, self.runs):
            cmd += ["-H", f"{name}: {value}"]
        if self.kind.body is not None:
            body_file = self.workdir / "body"
            if not body_file.exists():
                body_file.write_bytes(self.kind.body)
            cmd += ["-d", str(body_file)]  # a POST with that body
        elif self.kind.method != "GET":
            cmd += ["-H", f":method: {self.kind.method}"]
        return cmd + [self.url + self.kind.path]

    def run(self):
        # The first run is short: it only measures the rate that sizes the next ones.
        count = 20 * self.connections * self.streams
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            began = time.monotonic()
            if not self.one_run(count):
                self.stopping.set()
                return
            rate = count / max(time.monotonic() - began, 1e-3)
            left = max(self.deadline - time.monotonic(), 0)
            # h2load gives every connection at least one request.
            count = max(int(rate * min(RUN_SECONDS, left)), self.connections * self.streams)

    def one_run(self, count):
        """One h2load run of `count` requests; False if it failed."""
        log_file = self.workdir / "requests.log"
        cmd = self.command(count, log_file)
        self.runs += 1
        self.sent += count
        limit = STALL_SECONDS
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.run_began = time.monotonic()
        try:
            out, _ = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            self.stalled = True
            sockets, in_flight = self.sockets(), self.in_flight()
            self.proc.kill()
            self.proc.communicate()
            self.problems.append(f"{self.name}: an h2load run of {count} did not end in {limit} s; "
                                 f"its connections, both ends (ss):\n{sockets}\nin flight in Envoy: {in_flight}")
            return False
        summary = SUMMARY.search(out)
        if self.proc.returncode != 0 or not summary:
            self.problems.append(f"{self.name}: h2load exited {self.proc.returncode}: {out[-2000:]}")
            return False
        total, started, done, _, _, errored, timeout = (int(x) for x in summary.groups())
        if (total, started, done, errored, timeout) != (count, count, count, 0, 0):
            self.problems.append(f"{self.name}: h2load sent {count}: {summary.group(0)}")
        logged = 0
        with open(log_file) as lines:
            for line in lines:
                _, status, latency = line.split("\t")[:3]
                self.statuses[int(status)] += 1
                self.latencies_us[int(latency)] += 1
                logged += 1
        log_file.unlink()
        if logged != done:
            self.problems.append(f"{self.name}: h2load logged {logged} requests of {done} done")
        return True

    def sockets(self):
        """The TCP sockets of this run's h2load and their other ends, as `ss -tnpio` shows them
        (queues, counters, timers): where a stalled request's bytes wait."""
        sockets = []  # [socket line, its details]: ss -i puts the details on indented lines
        for line in subprocess.run(["ss", "-tnpio"], capture_output=True, text=True, timeout=30).stdout.splitlines()[1:]:
            if line[:1].isspace() and sockets:
                sockets[-1][1] += line.strip()
            else:
                sockets.append([line, ""])
        ports = {line.split()[3].rsplit(":", 1)[1] for line, _ in sockets if f"pid={self.proc.pid}," in line}
        return "\n".join(f"{line}\n  {details}" for line, details in sockets
                         if any(f":{port} " in f"{line} " for port in ports))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()


class Sample(NamedTuple):
    """One reading of the front Envoy."""

    seconds: float  # since the load began
    rss: int  # bytes, from /proc
    allocated: int  # bytes, server.memory_allocated (tcmalloc)
    completed: int  # requests its listeners completed


class MemorySampler(threading.Thread):
    """A Sample every second until stopped. A second whose reading fails (the admin port too
    slow under load) is left out, counted in `missed`, and its error kept in `last_error`."""

    def __init__(self, envoy, listeners):
        super().__init__(name="memory", daemon=True)
        self.envoy, self.listeners = envoy, listeners
        self.samples = []
        self.missed, self.last_error = 0, None
        self.start_time = time.monotonic()
        self.finished = threading.Event()
        # Only the stats a sample reads: the whole set is far larger, and slow to serve under load.
        completed = "|".join(f"http\\.{name}\\.downstream_rq_completed" for name in listeners)
        self.stats_url = (f"{envoy.admin_url}/stats?format=json&filter="
                          + urllib.parse.quote(f"^(server\\.memory_allocated|{completed})$"))

    def sample(self):
        answer = harness.http1("GET", self.stats_url, timeout=5)
        stats = {s["name"]: s["value"] for s in answer.json["stats"] if "value" in s}
        completed = sum(stats[f"http.{name}.downstream_rq_completed"] for name in self.listeners)
        return Sample(time.monotonic() - self.start_time, int(bench_measure.rss_mb(self.envoy) * 2**20),
                      stats["server.memory_allocated"], completed)

    def run(self):
        while not self.finished.wait(1.0 - (time.monotonic() - self.start_time) % 1.0):
            try:
                self.samples.append(self.sample())
            except Exception as error:  # noqa: BLE001  (a thread's exception would end it unseen)
                self.missed, self.last_error = self.missed + 1, repr(error)

    def stop(self):
        self.finished.set()
        self.join()


# ---------------------------------------------------------------- counting

def filter_outcomes(envoy):
    """What the filter counted, by outcome ("forwarded", "unmatched", or the problem kind it
    answered with): its meshver_requests_total, which counts each request once."""
    outcomes = collections.Counter()
    for family, labels, count in envoy.meshver_counters():
        if family == "meshver_requests_total":
            outcomes[labels["outcome"]] += count
    return outcomes


def settled_counts(envoy, listeners):
    """Envoy's stats and the filter's outcomes, once the outcomes cover every request the
    listeners counted (the filter hands its counts to Envoy once a second). If they never do,
    the counts as they are: count_problems() then says what is missing."""
    def settled():
        stats, outcomes = envoy.stats(), filter_outcomes(envoy)
        requests = sum(stats[f"http.{name}.downstream_rq_total"] for name in listeners)
        return (stats, outcomes) if sum(outcomes.values()) == requests else None
    try:
        return harness.wait_for(settled, 5, "the filter's counters cover every request")
    except harness.WaitFailed:
        return envoy.stats(), filter_outcomes(envoy)


def in_flight(envoy):
    """The gauges of what Envoy holds in flight that are not zero: requests on each listener and
    towards each cluster, connections (the admin port's own left out)."""
    active = re.compile(r"(downstream_rq_active|upstream_rq_active|upstream_rq_pending_active|downstream_cx_active)$")
    return {name: value for name, value in envoy.stats().items()
            if active.search(name) and value and "admin" not in name}


def delta(after, before):
    return {name: value - before.get(name, 0) for name, value in after.items()}


def deployment_groups(kinds):
    """The route keys split into groups that no kind's allowed deployments cross (kinds that
    a line serves may reach any of its deployments): each group's answers are exact."""
    groups = []
    for kind in kinds:
        if not kind.deployments:
            continue
        joined = set(kind.deployments)
        for group in [g for g in groups if g & joined]:
            groups.remove(group)
            joined |= group
        groups.append(joined)
    return [frozenset(g) for g in groups]


# ---------------------------------------------------------------- one run

def connection_shares(kinds, connections):
    """Connections per kind for one protocol: `connections` dealt out in kind order."""
    if connections < len(kinds):
        raise ValueError(f"{connections} connections per protocol cannot carry {len(kinds)} kinds")
    return [connections // len(kinds) + (i < connections % len(kinds)) for i in range(len(kinds))]


def run_load(stack, kinds, seconds, connections, warmup):
    """The load for `seconds` on `connections` connections (half HTTP/1.1, half HTTP/2), then
    the counts of every side. Returns the raw figures check() and report() read."""
    h2load = h2load_binary()
    listeners = sorted(stack.catalogs)
    workdir = Path(tempfile.mkdtemp(prefix="meshver-load-"))
    stopping = threading.Event()
    (front_before, outcomes_before), upstream_before = settled_counts(stack.front, listeners), stack.upstream.stats()
    sampler = MemorySampler(stack.front, listeners)  # its clock starts with the load
    idle = sampler.sample()
    began = sampler.start_time
    deadline = began + seconds
    drivers = []

    def in_flight_alone():
        """For a run that does not end: the others stop after their current runs, so that what
        Envoy then holds in flight is the stalled runs' own."""
        stopping.set()
        try:
            harness.wait_for(lambda: all(d.stalled or not d.proc or d.proc.poll() is not None for d in drivers),
                             STALL_SECONDS, "the other load generators' last runs end")
        except harness.WaitFailed as why:
            return f"{in_flight(stack.front)} ({why})"
        return in_flight(stack.front)

    for protocol in PROTOCOLS:
        shares = connection_shares(kinds, connections // len(PROTOCOLS))
        for index, (kind, share) in enumerate(zip(kinds, shares)):
            drivers.append(Driver(h2load, kind, protocol, stack.url(kind.listener), share, deadline,
                                  workdir / f"{protocol}-{index}", stopping, in_flight_alone))
    try:
        sampler.start()
        for driver in drivers:
            driver.start()
        for driver in drivers:
            # A driver's last run ends within its time limit after the deadline.
            driver.join(max(deadline + STALL_SECONDS + 30 - time.monotonic(), 1))
        elapsed = time.monotonic() - began
        sampler.stop()
        stuck = [d.name for d in drivers if d.is_alive()]
        if stuck:
            raise RuntimeError(f"load generators still running long after the deadline: {stuck}")
    finally:
        stopping.set()
        sampler.finished.set()
        for driver in drivers:
            driver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    front_after, outcomes_after = settled_counts(stack.front, listeners)
    return {"seconds": seconds, "elapsed": elapsed, "connections": connections, "warmup": warmup,
            "drivers": drivers, "idle": idle, "samples": sampler.samples, "missed_samples": sampler.missed,
            "sampler_error": sampler.last_error,
            "front": delta(front_after, front_before), "outcomes": delta(outcomes_after, outcomes_before),
            "upstream": delta(stack.upstream.stats(), upstream_before)}


# ---------------------------------------------------------------- what must hold

def memory_levels(result):
    """The front Envoy's memory: `idle` before the load (a Sample), then the median RSS and
    allocated bytes of the last MEMORY_WINDOW seconds of the warm-up (`warm`) and of the load
    (`end`), the lowest and highest after the warm-up (`low`, `peak`), and the requests completed
    in between."""
    samples, warmup, seconds = result["samples"], result["warmup"], result["seconds"]

    def level(until):
        # A sample lands a little after each whole second.
        window = [s for s in samples if until - MEMORY_WINDOW < s.seconds <= until + 0.5]
        if len(window) < MEMORY_WINDOW - 1:
            raise RuntimeError(f"{len(window)} memory samples in the {MEMORY_WINDOW} s before {until} s "
                               f"({result['missed_samples']} readings failed in the whole run, the last with "
                               f"{result['sampler_error']})")
        return {"rss": statistics.median(s.rss for s in window),
                "allocated": statistics.median(s.allocated for s in window),
                "completed": window[-1].completed}
    warm, end = level(warmup), level(seconds)
    after = [s for s in samples if s.seconds > warmup]
    return {"idle": result["idle"], "warm": warm, "end": end,
            "low": {"rss": min(s.rss for s in after), "allocated": min(s.allocated for s in after)},
            "peak": {"rss": max(s.rss for s in after), "allocated": max(s.allocated for s in after)},
            "requests_after_warmup": end["completed"] - warm["completed"]}


def status_problems(result):
    """Every run ended with every request done, and every request's status is its kind's."""
    problems = [p for d in result["drivers"] for p in d.problems]
    for d in result["drivers"]:
        if set(d.statuses) != {d.kind.status}:
            problems.append(f"{d.name}: statuses {dict(d.statuses)}, want only {d.kind.status}")
        if sum(d.statuses.values()) != d.sent:
            problems.append(f"{d.name}: {d.sent} sent, {sum(d.statuses.values())} answered")
    return problems


def count_problems(stack, kinds, result):
    """Nothing lost: Envoy's listeners counted exactly what was sent, by status class; each
    group of deployments answered exactly the requests of the kinds it serves, the filter itself
    the rest, and the two add up to what was sent."""
    drivers, front, upstream = result["drivers"], result["front"], result["upstream"]
    problems = []
    for listener in stack.catalogs:
        mine = [d for d in drivers if d.kind.listener == listener]
        want = {"total": sum(d.sent for d in mine), "completed": sum(d.sent for d in mine), "5xx": 0}
        for cls in ("2xx", "4xx"):
            want[cls] = sum(n for d in mine for s, n in d.statuses.items() if f"{s // 100}xx" == cls)
        got = {name: front.get(f"http.{listener}.downstream_rq_{name}", 0) for name in want}
        if got != want:
            problems.append(f"listener {listener}: Envoy counted {got}, the load generators {want}")
    answered = {route: upstream.get(f"http.{prefix}.downstream_rq_2xx", 0)
                for route, prefix in stack.upstream_prefixes.items()}
    for group in deployment_groups(kinds):
        want = sum(d.sent for d in drivers if d.kind.deployments and d.kind.deployments <= group)
        got = sum(answered[route] for route in group)
        if got != want:
            problems.append(f"upstreams {sorted(group)} answered {got}, want {want}")
    outcomes = collections.Counter(result["outcomes"])
    forwarded = sum(d.sent for d in drivers if d.kind.deployments)
    answers = sum(d.sent for d in drivers if not d.kind.deployments)
    filter_answers = sum(n for outcome, n in outcomes.items() if outcome not in ("forwarded", "unmatched"))
    if (outcomes["forwarded"], filter_answers) != (forwarded, answers):
        problems.append(f"the filter counted {outcomes['forwarded']} forwarded and {filter_answers} answered "
                        f"({dict(outcomes)}), want {forwarded} and {answers}")
    sent = sum(d.sent for d in drivers)
    if sum(answered.values()) + filter_answers != sent:
        problems.append(f"upstreams answered {sum(answered.values())}, the filter {filter_answers}: "
                        f"not the {sent} sent")
    return problems


def memory_problems(result):
    """RSS and tcmalloc's allocated bytes grew by at most MEMORY_GROWTH_BOUND from the end of
    the warm-up to the end of the load."""
    try:
        levels = memory_levels(result)
    except RuntimeError as missing:
        return [str(missing)]
    problems = []
    for what in ("rss", "allocated"):
        growth = levels["end"][what] - levels["warm"][what]
        if growth > MEMORY_GROWTH_BOUND:
            problems.append(f"{what} grew by {growth / 2**20:.1f} MiB after the warm-up "
                            f"(bound {MEMORY_GROWTH_BOUND / 2**20:.0f} MiB): {levels}")
    return problems


def log_problems(stack):
    """Neither Envoy logged anything at critical level."""
    return [f"{envoy.name} logged: {line}" for envoy in (stack.front, stack.upstream)
            for line in envoy.critical_lines()]


def check(stack, kinds, result):
    """Everything that must hold after a run, as a list of what did not (empty: all held)."""
    return (status_problems(result) + count_problems(stack, kinds, result) + memory_problems(result)
            + log_problems(stack))


# ---------------------------------------------------------------- figures

def percentile(histogram, fraction):
    """The value below which `fraction` of a histogram's ({value: count}) counts lie."""
    rank, seen = fraction * sum(histogram.values()), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return 0


def figures(result):
    """The run's figures: per protocol requests, rate, status counts, p50 and p99; memory."""
    out = {"seconds": round(result["elapsed"], 1), "connections": result["connections"],
           "warmup": result["warmup"], "protocols": {}}
    for protocol in PROTOCOLS:
        mine = [d for d in result["drivers"] if d.protocol == protocol]
        latencies, statuses = collections.Counter(), collections.Counter()
        for d in mine:
            latencies.update(d.latencies_us)
            statuses.update(d.statuses)
        requests = sum(d.sent for d in mine)
        out["protocols"][protocol] = {
            "requests": requests, "rps": requests / result["elapsed"],
            "connections": sum(d.connections for d in mine), "statuses": dict(sorted(statuses.items())),
            "p50_ms": percentile(latencies, 0.50) / 1000, "p99_ms": percentile(latencies, 0.99) / 1000,
            "max_ms": max(latencies, default=0) / 1000}
    out["memory"] = memory_levels(result)
    out["samples"], out["missed_samples"] = len(result["samples"]), result["missed_samples"]
    # Memory over time: the sample nearest each of 8 even steps through the load.
    step = result["seconds"] / 8
    out["trace"] = [min(result["samples"], key=lambda s, t=i * step: abs(s.seconds - t)) for i in range(1, 9)]
    out["kinds"] = {}
    for d in result["drivers"]:
        out["kinds"].setdefault(d.kind.name, {"status": d.kind.status})[d.protocol] = d.sent
    return out


def mib(n):
    return f"{n / 2**20:.1f} MiB"


def report(fig):
    """The figures as text: a table per protocol, memory, the mix."""
    lines = ["| protocol | connections | requests | requests/s | statuses | p50 | p99 | slowest |",
             "|---|---|---|---|---|---|---|---|"]
    for protocol, p in fig["protocols"].items():
        statuses = ", ".join(f"{n:,} × {s}" for s, n in p["statuses"].items())
        lines.append(f"| {protocol} | {p['connections']} | {p['requests']:,} | {p['rps']:,.0f} | {statuses} | "
                     f"{p['p50_ms']:.1f} ms | {p['p99_ms']:.1f} ms | {p['max_ms'] / 1000:.1f} s |")
    m = fig["memory"]
    lines += ["", f"| Envoy memory | idle, before the load | end of the {fig['warmup']} s warm-up | end of the load "
              "| growth | samples after the warm-up |", "|---|---|---|---|---|---|"]
    for what, name in (("rss", "RSS"), ("allocated", "server.memory_allocated")):
        lines.append(f"| {name} | {mib(getattr(m['idle'], what))} | {mib(m['warm'][what])} | {mib(m['end'][what])} | "
                     f"{(m['end'][what] - m['warm'][what]) / 2**20:+.1f} MiB | "
                     f"{m['low'][what] / 2**20:.1f} to {mib(m['peak'][what])} |")
    idle = m["idle"]
    lines += ["", "| Envoy memory over time | " + " | ".join(f"{s.seconds:.0f} s" for s in fig["trace"]) + " |",
              "|---|" + "---|" * len(fig["trace"]),
              "| requests completed | " + " | ".join(f"{(s.completed - idle.completed) / 1e6:.2f} M" for s in fig["trace"])
              + " |"]
    for what, name in (("rss", "RSS (MiB)"), ("allocated", "allocated (MiB)")):
        lines.append(f"| {name} | " + " | ".join(f"{getattr(s, what) / 2**20:.1f}" for s in fig["trace"]) + " |")
    lines += ["", f"Bound on growth: {mib(MEMORY_GROWTH_BOUND)} (each end the median of its last {MEMORY_WINDOW} s "
              f"of samples; {fig['samples']} samples, {fig['missed_samples']} readings failed); over the {m['requests_after_warmup']:,} requests after the warm-up, a leak of "
              f"{MEMORY_GROWTH_BOUND / max(m['requests_after_warmup'], 1):.1f} bytes per request would have crossed it."]
    return "\n".join(lines)


def kinds_table(fig):
    lines = ["| kind | status | HTTP/1.1 | HTTP/2 |", "|---|---|---|---|"]
    lines += [f"| {name} | {k['status']} | {k.get('http1', 0):,} | {k.get('http2', 0):,} |"
              for name, k in fig["kinds"].items()]
    return "\n".join(lines)


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()


def publish(text):
    md = BENCHMARKS_MD.read_text()
    start, end = MARKERS
    if start not in md or end not in md:
        raise RuntimeError(f"BENCHMARKS.md has no {start} … {end} markers")
    BENCHMARKS_MD.write_text(md[:md.index(start) + len(start)] + "\n" + text + "\n" + md[md.index(end):])


# ---------------------------------------------------------------- `make soak`

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS") or 240),
                        help="seconds of load (default: SOAK_SECONDS, else 240)")
    parser.add_argument("--connections", type=int, default=128, help="connections, half of them HTTP/2")
    parser.add_argument("--warmup", type=int, help="seconds of load before memory must stay flat "
                        "(default: a quarter of the run, at most 60)")
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60, args.seconds // 4)
    # SIGTERM stops the run like Ctrl-C: every process started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    load_before = uptime()
    with LoadStack() as stack:
        kinds = load_kinds(stack.compiled["edge"], stack.compiled["served"])
        problems = check_answers_once(stack, kinds)
        if problems:
            sys.exit("answers before the load are wrong:\n" + "\n".join(problems))
        print(f"{len(kinds)} kinds answer as expected; {args.seconds} s of load on {args.connections} "
              f"connections (warm-up {warmup} s)", flush=True)
        result = run_load(stack, kinds, args.seconds, args.connections, warmup)
        problems = check(stack, kinds, result)
    load_after = uptime()
    if problems:
        # What went wrong first: the figures may lack what the failure cut short.
        print("the soak FAILED:\n" + "\n".join(problems), flush=True)
    try:
        fig = figures(result)
    except RuntimeError as missing:
        sys.exit(f"no figures: {missing}")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    text = "\n\n".join([
        f"Run of {date}: {fig['seconds']:.0f} s of load, {fig['connections']} connections "
        f"({len(kinds)} kinds × 2 protocols, one h2load each); the front Envoy with 2 workers, on CPUs "
        f"shared with the load generators and the upstream Envoy. Machine: {bench_run.machine()}.",
        report(fig), "Requests of each kind:", kinds_table(fig),
        f"Load: `{load_before}` before, `{load_after}` after."])
    print(text)
    if problems:
        sys.exit("the soak FAILED (above)")
    print("all checks held")
    if not args.no_write:
        publish(text)
        print(f"written to {BENCHMARKS_MD.relative_to(harness.ROOT)}")


if __name__ == "__main__":
    main()
