"""The results: the JSON of a run (bench/results/), and the tables printed and written
between the markers of BENCHMARKS.md."""

import json
import statistics

from .arms import ARM_NAMES
from .body import BODY_ARM_NAMES, BODY_ARMS
from .env import BENCHMARKS_MD, BODY_CRITERION, RESULTS, ROOT, log
from .measure import body_in_v8, criterion_median_ns

# (key in each round's results, row label, digits shown)
METRICS = [("cpu_us_per_req", "Envoy CPU per request (µs)", 2),
           ("cpu_us_per_req_h2", "Envoy CPU per request over HTTP/2 (µs)", 2),
           ("rps", "throughput at saturation (req/s)", 0),
           ("p50_us", "p50 latency at fixed rate (µs)", 0), ("p99_us", "p99 latency at fixed rate (µs)", 0),
           ("rss_idle_mb", "RSS idle, 1 worker (MiB)", 1), ("rss_load_mb", "RSS under load, 1 worker (MiB)", 1),
           ("rss_per_worker_mb", "RSS of each further worker (MiB)", 1)]
MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
BODY_MARKERS = ("<!-- body-results:start -->", "<!-- body-results:end -->")
# What each body arm is compared with, within each round: the same request without the work
# in question (P: no filter at all; H0: meshver's header filter alone; H: meshver's two
# filters, no body work).
BODY_COMPARISONS = [("T", "P"), ("M1", "H"), ("M3", "H"), ("M1", "P"), ("M3", "P"), ("H0", "P"), ("H", "H0")]
# Arm N's goals against arm A (issue 16, item 4): added CPU per request, throughput, RSS; and the
# first wasm VM's memory against the empty filter's (item 5).
NATIVE_ADDED_US_TARGET, NATIVE_RPS_RATIO_TARGET, NATIVE_RSS_MIB_TARGET, WASM_RSS_OVER_EMPTY_MIB_TARGET = 1, 0.97, 5, 5
# The top-level keys of a run's results that belong to the header arms (part_of).
HEADER_KEYS = ("empty_module_bytes", "decide_ns_per_request", "decide_in_v8", "mix_kinds", "arms", "summary", "rounds",
               "native_module_bytes")
# The body arms' targets (issue 12, item 7).
BODY_MBPS_TARGET, BODY_ADDED_US_TARGET, MODULE_BYTES_TARGET = 150, 20, 1 << 20


def summarize(rounds, arms):
    """Per arm and metric: median, min and max over rounds, and the same of the ratio to arm A
    within each round; the added CPU and RSS over arm A; the Envoy core's median busy share."""
    summary = {}
    for arm in arms:
        summary[arm] = {}
        for key, _, _ in METRICS:
            if any(key not in r[arm] for r in rounds):
                continue  # a run from before the metric
            values = [r[arm][key] for r in rounds]
            ratios = [r[arm][key] / r["A"][key] if r["A"][key] else float("nan") for r in rounds]
            summary[arm][key] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                 "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                                 "ratio_max": max(ratios)}
        for key in ("cpu_us_per_req", "cpu_us_per_req_h2", "rss_idle_mb", "rss_load_mb", "rss_per_worker_mb"):
            if any(key not in r[arm] for r in rounds):
                continue
            added = [r[arm][key] - r["A"][key] for r in rounds]
            summary[arm][f"added_{key}"] = {"median": statistics.median(added), "min": min(added), "max": max(added)}
        summary[arm]["envoy_core_busy"] = statistics.median(r[arm]["envoy_core_busy"] for r in rounds)
    return summary


def table(summary, arms):
    """The main table: a row per metric, a column per arm."""
    out = ["| metric | " + " | ".join(f"{a} {ARM_NAMES[a]}" for a in arms) + " |",
           "|---|" + "---|" * len(arms)]
    for key, label, digits in METRICS:
        if key not in summary["A"]:
            continue
        cells = []
        for arm in arms:
            s = summary[arm][key]
            cell = f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"
            if arm != "A":
                cell += f"<br>×{s['ratio_median']:.3f} ({s['ratio_min']:.3f}–{s['ratio_max']:.3f})"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in (("cpu_us_per_req", "added CPU per request vs A (µs)"),
                       ("cpu_us_per_req_h2", "added CPU per request over HTTP/2 vs A (µs)"),
                       ("rss_load_mb", "added RSS under load vs A (MiB, 1 worker)"),
                       ("rss_per_worker_mb", "added RSS per further worker vs A (MiB)")):
        if "added_" + key not in summary[arms[-1]]:
            continue
        cells = ["—"] + [f"{summary[a]['added_' + key]['median']:+.2f} ({summary[a]['added_' + key]['min']:+.2f}"
                         f"–{summary[a]['added_' + key]['max']:+.2f})" for a in arms[1:]]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("| Envoy core busy during saturation | " +
               " | ".join(f"{summary[a]['envoy_core_busy'] * 100:.0f}%" for a in arms) + " |")
    return "\n".join(out)


def targets(summary, rounds, module_bytes, decide_ns_per_req):
    """The targets table (needs all four arms)."""
    c = summary["C"]
    added_c = c["added_cpu_us_per_req"]["median"]
    # meshver against Lua, like everything else, within each round first.
    vs_lua_rps = statistics.median(r["C"]["rps"] / r["B"]["rps"] for r in rounds)
    vs_lua_cpu = statistics.median((r["C"]["cpu_us_per_req"] - r["A"]["cpu_us_per_req"])
                                   / (r["B"]["cpu_us_per_req"] - r["A"]["cpu_us_per_req"]) for r in rounds)
    rows = [
        ("meshver added CPU per request over A ≤ 5 µs", f"{added_c:.2f} µs", added_c <= 5),
        ("meshver throughput ≥ 0.90 × A", f"×{c['rps']['ratio_median']:.3f}", c["rps"]["ratio_median"] >= 0.90),
        ("meshver throughput ≥ 1.2 × Lua", f"×{vs_lua_rps:.3f}", vs_lua_rps >= 1.2),
        ("meshver added CPU ≤ 0.8 × Lua's", f"×{vs_lua_cpu:.3f}", vs_lua_cpu <= 0.8),
        ("meshver p99 at fixed rate ≤ 1.15 × A", f"×{c['p99_us']['ratio_median']:.3f}",
         c["p99_us"]["ratio_median"] <= 1.15),
        ("release module ≤ 1 MB (1,000,000 bytes)", f"{module_bytes:,} bytes", module_bytes <= 1_000_000),
        ("added RSS per worker ≤ 20 MB", f"{c['added_rss_per_worker_mb']['median']:+.1f} MiB per further worker; "
         f"{c['added_rss_load_mb']['median']:+.1f} MiB for a 1-worker Envoy under load (main thread's VM included)",
         c["added_rss_per_worker_mb"]["median"] * 2**20 <= 20e6),
        ("decision path natively < 1 µs per request", f"{decide_ns_per_req:.0f} ns" if decide_ns_per_req else "n/a",
         bool(decide_ns_per_req) and decide_ns_per_req < 1000),
    ]
    over_empty = [r["C"]["rss_load_mb"] - r["C0"]["rss_load_mb"] for r in rounds]
    over_empty_mib = statistics.median(over_empty)
    rows.append((f"meshver's first VM within {WASM_RSS_OVER_EMPTY_MIB_TARGET} MiB of the empty filter's (RSS under "
                 "load, 1 worker, C − C0 within a round)",
                 f"{over_empty_mib:+.1f} MiB ({min(over_empty):+.1f} to {max(over_empty):+.1f})",
                 over_empty_mib <= WASM_RSS_OVER_EMPTY_MIB_TARGET))
    if "N" in summary:
        n = summary["N"]
        added_n = n["added_cpu_us_per_req"]["median"]
        added_n_h2 = n.get("added_cpu_us_per_req_h2", {}).get("median")
        vs_c = statistics.median(r["N"]["cpu_us_per_req"] - r["C"]["cpu_us_per_req"] for r in rounds)
        split = ""
        if "N0" in summary:
            # The module filter itself (N0 over A) and meshver's work inside it (N over N0).
            own = statistics.median(r["N"]["cpu_us_per_req"] - r["N0"]["cpu_us_per_req"] for r in rounds)
            split = (f"; of it, the empty module (N0) {summary['N0']['added_cpu_us_per_req']['median']:+.2f} µs and "
                     f"meshver's own work (N − N0) {own:+.2f} µs")
        rows += [
            (f"native meshver (N) added CPU per request over A ≤ {NATIVE_ADDED_US_TARGET} µs",
             f"{added_n:+.2f} µs ({n['added_cpu_us_per_req']['min']:+.2f} to {n['added_cpu_us_per_req']['max']:+.2f}); "
             + (f"over HTTP/2 {added_n_h2:+.2f} µs; " if added_n_h2 is not None else "")
             + f"{vs_c:+.2f} µs against the wasm filter (C){split}", added_n <= NATIVE_ADDED_US_TARGET),
            (f"native meshver throughput ≥ {NATIVE_RPS_RATIO_TARGET} × A", f"×{n['rps']['ratio_median']:.3f}",
             n["rps"]["ratio_median"] >= NATIVE_RPS_RATIO_TARGET),
            (f"native meshver RSS within {NATIVE_RSS_MIB_TARGET} MiB of A (under load, 1 worker)",
             f"{n['added_rss_load_mb']['median']:+.1f} MiB", n["added_rss_load_mb"]["median"] <= NATIVE_RSS_MIB_TARGET),
            ("native meshver p99 at fixed rate (no goal)", f"×{n['p99_us']['ratio_median']:.3f} of A", None),
        ]
    lines = ["| target | measured (median) | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'—' if ok is None else 'met' if ok else '**missed**'} |" for t, m, ok in rows]
    return "\n".join(lines)


def _spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def body_results(spec, rounds, body_wasm):
    """The body arms' part of the results: the bytes each arm carries per request, each round's
    CPU per request, the summary, the same bodies through the data engine natively (criterion,
    bench/body) and in V8 (bench/body-wasm), and the body filter's module size."""
    sizes = {size: {"client_bytes": {arm: len(spec.client_body(arm, size)) for arm in BODY_ARMS},
                    "upstream_bytes": len(spec.upstream_body(size)),
                    "bytes_per_request": {arm: spec.bytes_per_request(arm, size) for arm in BODY_ARMS}}
             for size in spec.sizes}
    return {"arms": BODY_ARMS, "sizes": sizes, "rounds": rounds,
            "summary": body_summary(rounds, sizes) if rounds else None,
            "native": body_native(spec, sizes), "in_v8": body_in_v8(spec),
            "body_module_bytes": body_wasm.stat().st_size}


def body_summary(rounds, sizes):
    """Per size: each arm's CPU per request, its ratio to arm P's and its whole-Envoy MB/s per
    core (body bytes ÷ CPU);
    for each comparison, the added CPU per request and the MB/s per core of the added work
    (body bytes ÷ added CPU), each within a round, then median, min and max over rounds."""
    out = {}
    for size, facts in sizes.items():
        per_round = [r[size] for r in rounds]
        bytes_of = facts["bytes_per_request"]
        arms = {arm: {"cpu_us_per_req": _spread([r[arm]["cpu_us_per_req"] for r in per_round]),
                      "ratio_to_P": _spread([r[arm]["cpu_us_per_req"] / r["P"]["cpu_us_per_req"] for r in per_round]),
                      "envoy_mbps": _spread([bytes_of[arm] / r[arm]["cpu_us_per_req"] for r in per_round])}
                for arm in BODY_ARMS}
        added = {}
        for arm, base in BODY_COMPARISONS:
            diffs = [r[arm]["cpu_us_per_req"] - r[base]["cpu_us_per_req"] for r in per_round]
            added[f"{arm}-{base}"] = {"added_us": _spread(diffs),
                                      "mbps": _spread([bytes_of[arm] / d if d > 0 else float("inf") for d in diffs])}
        out[size] = {"arms": arms, "added": added}
    return out


def body_native(spec, sizes):
    """The criterion figures of bench/body (None where it has not run): per client (steps) and
    size, ns for the plan, the request upgrade and the response walk-back, their sum per
    request and its MB/s; and parse+serialise alone (no ops) per size."""
    out = {}
    for client in spec.data["clients"]:
        steps, arm = client["steps"], "M1" if client["steps"] == 1 else "M3"
        plan = criterion_median_ns(BODY_CRITERION / f"plan-{steps}step" / spec.sizes[0])
        for size in spec.sizes:
            request = criterion_median_ns(BODY_CRITERION / f"request-{steps}step" / size)
            response = criterion_median_ns(BODY_CRITERION / f"response-{steps}step" / size)
            if None in (plan, request, response):
                continue
            total = plan + request + response
            out[f"{steps}-{size}"] = {"steps": steps, "size": size, "plan_ns": plan, "request_ns": request,
                                      "response_ns": response, "us_per_request": total / 1000,
                                      "mbps": sizes[size]["bytes_per_request"][arm] / total * 1000}
    for size in spec.sizes:
        roundtrip = criterion_median_ns(BODY_CRITERION / "parse-serialise" / size)
        if roundtrip:
            out[f"parse-serialise-{size}"] = {"size": size, "ns": roundtrip,
                                              "mbps": sizes[size]["client_bytes"]["M1"] / roundtrip * 1000}
    return out


def body_tables(body, previous_c=None, current_c=None):
    """The body arms' tables: CPU per request, what the body work adds with its MB/s per core
    next to the engine natively, and the targets."""
    sizes, native = body["sizes"], body["native"]
    summary = body_summary(body["rounds"], sizes)  # from the rounds: a saved run re-renders with this code
    names = list(sizes)

    def label(size):
        b = sizes[size]
        return f"{size} ({b['client_bytes']['M1']:,} B in, {b['upstream_bytes']:,} B out)"

    out = ["CPU of the front Envoy per request (µs), median (min–max over rounds); under it, the median ratio "
           "to arm P's within a round, and the body bytes the Envoy carries (in and out) per second of its "
           "CPU (MB/s per core, whole Envoy):", "",
           "| body | " + " | ".join(f"{a} {BODY_ARM_NAMES[a]}" for a in BODY_ARMS) + " |",
           "|---|" + "---|" * len(BODY_ARMS)]
    for size in names:
        cells = []
        for arm in BODY_ARMS:
            figures = summary[size]["arms"][arm]
            cpu, ratio, mbps = figures["cpu_us_per_req"], figures["ratio_to_P"], figures["envoy_mbps"]
            cells.append(f"{cpu['median']:.1f} ({cpu['min']:.1f}–{cpu['max']:.1f})<br>"
                         + (f"×{ratio['median']:.2f} · " if arm != "P" else "") + f"{mbps['median']:.0f} MB/s")
        out.append(f"| {label(size)} | " + " | ".join(cells) + " |")

    def added(size, key, rate=True):
        a = summary[size]["added"][key]
        return (f"{a['added_us']['median']:+.1f} µs ({a['added_us']['min']:+.1f}–{a['added_us']['max']:+.1f})"
                + (f"<br>{a['mbps']['median']:.0f} MB/s" if rate else ""))

    def natively(key):
        n = native.get(key)
        return f"{n['us_per_request']:.1f} µs<br>{n['mbps']:.0f} MB/s" if n else "—"

    def in_v8(steps, size):
        ns = (body.get("in_v8") or {}).get(f"{steps}-{size}")
        arm = "M1" if steps == 1 else "M3"
        return f"{ns / 1000:.1f} µs<br>{sizes[size]['bytes_per_request'][arm] / ns * 1000:.0f} MB/s" if ns else "—"

    out += ["", "What the body work adds per request: median (min–max over rounds) of the difference within "
            "each round, and under it the body bytes per second of that added CPU (MB/s per core); then what "
            "meshver costs a request with no body work:", "",
            "| body | T over P (transform) | M1 over H (body filter, 1 step) | M3 over H (3 steps) "
            "| M1 over P (meshver in all, 1 step) | H0 over P (header filter) "
            "| H over H0 (body filter present, skipped) |", "|---|" + "---|" * 6]
    for size in names:
        out.append(f"| {size} | " + " | ".join([
            added(size, "T-P"), added(size, "M1-H"), added(size, "M3-H"), added(size, "M1-P"),
            added(size, "H0-P", rate=False), added(size, "H-H0", rate=False)]) + " |")
    out += ["", "The data engine alone on the same bodies, per request (plan + request upgrade + response "
            "walk-back) and MB/s of the same body bytes: natively (criterion, bench/body), and compiled to wasm "
            "in V8 (node's, bench/body-wasm: no host calls, no copies in or out of the VM); and parse + "
            "serialise alone natively, no ops, of the one-step client's request body:", "",
            "| body | natively, 1 step | natively, 3 steps | in V8, 1 step | in V8, 3 steps "
            "| natively, parse + serialise |", "|---|---|---|---|---|---|"]
    for size in names:
        floor = native.get(f"parse-serialise-{size}")
        out.append(f"| {size} | {natively(f'1-{size}')} | {natively(f'3-{size}')} | {in_v8(1, size)} | "
                   f"{in_v8(3, size)} | "
                   + (f"{floor['ns'] / 1000:.1f} µs<br>{floor['mbps']:.0f} MB/s" if floor else "—") + " |")

    large, small = names[-1], names[0]
    rate = summary[large]["added"]["M1-H"]["mbps"]["median"]
    cost = summary[small]["added"]["M1-H"]["added_us"]["median"]
    module = body["body_module_bytes"]
    rows = [(f"≥ {BODY_MBPS_TARGET} MB/s per core inside Envoy, one step ({large}: body bytes ÷ the body "
             "filter's added CPU, M1 over H)", f"{rate:.0f} MB/s", rate >= BODY_MBPS_TARGET),
            (f"≤ {BODY_ADDED_US_TARGET} µs added for a 1 KB body, one step ({small}, M1 over H)",
             f"{cost:+.1f} µs (over P, with the header filter: "
             f"{summary[small]['added']['M1-P']['added_us']['median']:+.1f} µs)", cost <= BODY_ADDED_US_TARGET),
            ("module ≤ 1 MiB (meshver_body.wasm)", f"{module:,} bytes", module <= MODULE_BYTES_TARGET)]
    if previous_c and current_c:
        # The ratio, not the µs: the load of the shared machine moves arm A's CPU as much as C's.
        was, now = previous_c["cpu_us_per_req"], current_c["cpu_us_per_req"]
        rows.append(("header arms unchanged: arm C's CPU per request over arm A's (ratio within a round) no "
                     "higher than in the previous published run's highest round",
                     f"×{now['ratio_median']:.3f} (previous run: ×{was['ratio_median']:.3f}, rounds "
                     f"×{was['ratio_min']:.3f} to ×{was['ratio_max']:.3f}); added "
                     f"{current_c['added_cpu_us_per_req']['median']:+.2f} µs (previous "
                     f"{previous_c['added_cpu_us_per_req']['median']:+.2f} µs)",
                     now["ratio_median"] <= was["ratio_max"]))
    out += ["", "| target | measured (median) | met? |", "|---|---|---|"]
    out += [f"| {t} | {m} | {'met' if ok else '**missed**'} |" for t, m, ok in rows]
    return "\n".join(out)


def save(report, name):
    """bench/results/NAME (latest.json for a full run of the build `make build` leaves)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=1))
    log(f"results saved to {(RESULTS / name).relative_to(ROOT)}")


def part_of(run, part):
    """The results of one part ("header" or "body") of a saved run, to keep beside a run of the
    other part alone; each part's own date and load go with it."""
    about = {k: run[k] for k in ("date", "machine", "uptime_before", "uptime_after") if k in run}
    if part == "body":
        if "body" not in run:
            return {}
        # The header figures its "header arms unchanged" row compared, of that run.
        compared = {"header_c": run.get("summary", {}).get("C"),
                    "previous_c": run.get("previous", {}).get("summary", {}).get("C")}
        return {"body": {"run": about, **compared, **run["body"]}}
    kept = {k: run[k] for k in HEADER_KEYS if k in run}
    return {**kept, "header_run": run.get("header_run", about)} if kept else {}


def publish(report, write, parts=("header", "body")):
    """The results text of each part run (printed, and put between its markers in
    BENCHMARKS.md if `write`)."""
    texts = {}
    if "summary" in report and "header" in parts:
        texts[MARKERS] = header_text(report)
    if report.get("body", {}).get("rounds") and "body" in parts:
        previous = report.get("previous", {}).get("summary", {}).get("C")
        current = report["summary"]["C"] if "summary" in report and "C" in report["summary"] else None
        if "run" in report["body"]:  # kept from an earlier run: that run's comparison
            previous, current = report["body"].get("previous_c"), report["body"].get("header_c")
        # A body part kept from an earlier run (part_of) names that run's date and load.
        run = report["body"].get("run", report)
        texts[BODY_MARKERS] = "\n\n".join([
            f"Run of {run['date']}: {len(report['body']['rounds'])} rounds; in each, per body size, the "
            f"{len(report['body']['arms'])} arms in alternating bursts (order rotated each round).",
            body_tables(report["body"], previous, current),
            f"Machine: {run['machine']}. Load: `{run['uptime_before']}` before, "
            f"`{run['uptime_after']}` after."])
    for text in texts.values():
        log("\n" + text)
    if write and BENCHMARKS_MD.exists():
        md = BENCHMARKS_MD.read_text()
        for (start, end), text in texts.items():
            if start in md and end in md:
                md = md[:md.index(start) + len(start)] + "\n" + text + "\n" + md[md.index(end):]
        BENCHMARKS_MD.write_text(md)
        log(f"\nresults written to {BENCHMARKS_MD.relative_to(ROOT)}")


def header_text(report):
    """The header arms' results: the main table, the targets, the decision path alone."""
    summary, rounds, arms = report["summary"], report["rounds"], report["arms"]
    in_v8, decide_ns = report["decide_in_v8"], report["decide_ns_per_request"]
    return "\n\n".join([
        f"Run of {report['date']}: {len(rounds)} rounds, arms interleaved (order rotated each round); "
        f"median (min–max over rounds), and the median ratio to arm A of the same round (min–max).",
        table(summary, arms),
        targets(summary, rounds, report["module_bytes"], decide_ns) if {"A", "B", "C0", "C"} <= set(arms)
        else "(the targets need arms A, B, C0 and C)",
        f"meshver.wasm: {report['module_bytes']:,} bytes; empty filter: {report['empty_module_bytes']:,} bytes"
        + (f"; libmeshver.so: {report['native_module_bytes']:,} bytes" if report.get("native_module_bytes") else "")
        + ". "
        f"Decision path (criterion, whole mix / {report['mix_kinds']}): "
        + (f"{decide_ns:.0f} ns per request natively" if decide_ns else "not measured natively (run the criterion bench)")
        + (f"; compiled to wasm and run in V8 by node (bench/decide-wasm): "
           f"{in_v8['bench_decide_ns_per_request']} ns per request, "
           f"{in_v8['bench_decide_with_map_ns_per_request']} ns with the reading of the serialised header "
           f"map that the host adapter does." if in_v8 else "."),
        f"Machine: {report['machine']}.",
        f"Load: `{report['uptime_before']}` before, `{report['uptime_after']}` after."])


def by_kind_table(rows, arms):
    """`--by-kind`: a row per group of requests (name, {arm: [CPU µs per request of each
    round]}); medians, and what each arm adds to arm A's."""
    head = "| requests | A native (µs) | " + " | ".join(f"{a} {ARM_NAMES[a]} (added)" for a in arms if a != "A")
    out = [head + " |", "|---|" + "---|" * len(arms)]
    for name, cpu in rows:
        out.append(by_kind_row(name, cpu, arms))
    return "\n".join(out)


def by_kind_row(name, cpu, arms):
    base = statistics.median(cpu["A"])
    cells = [f"{base:.2f}"] + [f"{statistics.median(cpu[a]):.2f} ({statistics.median(cpu[a]) - base:+.2f})"
                                for a in arms if a != "A"]
    return f"| {name} | " + " | ".join(cells) + " |"
