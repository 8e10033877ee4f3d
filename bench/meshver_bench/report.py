"""The results: the JSON of a run (bench/results/), and the tables printed and written
between the markers of BENCHMARKS.md."""

import json
import statistics

from .arms import ARM_NAMES
from .env import BENCHMARKS_MD, RESULTS, ROOT, log

# (key in each round's results, row label, digits shown)
METRICS = [("cpu_us_per_req", "Envoy CPU per request (µs)", 2), ("rps", "throughput at saturation (req/s)", 0),
           ("p50_us", "p50 latency at fixed rate (µs)", 0), ("p99_us", "p99 latency at fixed rate (µs)", 0),
           ("rss_idle_mb", "RSS idle, 1 worker (MiB)", 1), ("rss_load_mb", "RSS under load, 1 worker (MiB)", 1),
           ("rss_per_worker_mb", "RSS of each further worker (MiB)", 1)]
MARKERS = ("<!-- results:start -->", "<!-- results:end -->")


def summarize(rounds, arms):
    """Per arm and metric: median, min and max over rounds, and the same of the ratio to arm A
    within each round; the added CPU and RSS over arm A; the Envoy core's median busy share."""
    summary = {}
    for arm in arms:
        summary[arm] = {}
        for key, _, _ in METRICS:
            values = [r[arm][key] for r in rounds]
            ratios = [r[arm][key] / r["A"][key] if r["A"][key] else float("nan") for r in rounds]
            summary[arm][key] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                 "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                                 "ratio_max": max(ratios)}
        for key in ("cpu_us_per_req", "rss_idle_mb", "rss_load_mb", "rss_per_worker_mb"):
            added = [r[arm][key] - r["A"][key] for r in rounds]
            summary[arm][f"added_{key}"] = {"median": statistics.median(added), "min": min(added), "max": max(added)}
        summary[arm]["envoy_core_busy"] = statistics.median(r[arm]["envoy_core_busy"] for r in rounds)
    return summary


def table(summary, arms):
    """The main table: a row per metric, a column per arm."""
    out = ["| metric | " + " | ".join(f"{a} {ARM_NAMES[a]}" for a in arms) + " |",
           "|---|" + "---|" * len(arms)]
    for key, label, digits in METRICS:
        cells = []
        for arm in arms:
            s = summary[arm][key]
            cell = f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"
            if arm != "A":
                cell += f"<br>×{s['ratio_median']:.3f} ({s['ratio_min']:.3f}–{s['ratio_max']:.3f})"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in (("cpu_us_per_req", "added CPU per request vs A (µs)"),
                       ("rss_load_mb", "added RSS under load vs A (MiB, 1 worker)"),
                       ("rss_per_worker_mb", "added RSS per further worker vs A (MiB)")):
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
    lines = ["| target | measured (median) | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'met' if ok else '**missed**'} |" for t, m, ok in rows]
    return "\n".join(lines)


def save(report, name):
    """bench/results/NAME (latest.json for a full run of the build `make build` leaves)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=1))
    log(f"results saved to {(RESULTS / name).relative_to(ROOT)}")


def publish(report, write):
    """The results text (printed, and put between the markers of BENCHMARKS.md if `write`)."""
    summary, rounds, arms = report["summary"], report["rounds"], report["arms"]
    in_v8, decide_ns = report["decide_in_v8"], report["decide_ns_per_request"]
    text = "\n\n".join([
        f"Run of {report['date']}: {len(rounds)} rounds, arms interleaved (order rotated each round); "
        f"median (min–max over rounds), and the median ratio to arm A of the same round (min–max).",
        table(summary, arms),
        targets(summary, rounds, report["module_bytes"], decide_ns) if len(arms) == 4
        else "(the targets need all four arms)",
        f"meshver.wasm: {report['module_bytes']:,} bytes; empty filter: {report['empty_module_bytes']:,} bytes. "
        f"Decision path (criterion, whole mix / {report['mix_kinds']}): "
        + (f"{decide_ns:.0f} ns per request natively" if decide_ns else "not measured natively (run the criterion bench)")
        + (f"; compiled to wasm and run in V8 by node (bench/decide-wasm): "
           f"{in_v8['bench_decide_ns_per_request']} ns per request, "
           f"{in_v8['bench_decide_with_map_ns_per_request']} ns with the reading of the serialised header "
           f"map that the host adapter does." if in_v8 else "."),
        f"Machine: {report['machine']}.",
        f"Load: `{report['uptime_before']}` before, `{report['uptime_after']}` after."])
    log("\n" + text)
    if write and BENCHMARKS_MD.exists():
        md = BENCHMARKS_MD.read_text()
        start, end = MARKERS
        if start in md and end in md:
            md = md[:md.index(start) + len(start)] + "\n" + text + "\n" + md[md.index(end):]
            BENCHMARKS_MD.write_text(md)
            log(f"\nresults written to {BENCHMARKS_MD.relative_to(ROOT)}")


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
