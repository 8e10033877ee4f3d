"""The benchmark behind `make bench` (bench/run.py is the procedure).

Modules, in the order a run uses them:

  env      where things are (repository, built artefacts, CPUs), the test harness's
           process handling imported from tests/harness.py, small helpers
  catalog  what meshver says about the demo catalog: the compiled catalog from
           `meshver check --json`, the route config from `meshver render envoy`
  mix      the request mix (bench/mix.json) as wrk scripts and raw requests, and the
           answer check every arm passes before any timing
  arms     the Envoy configs: the upstream, and the front Envoy of arms A, B, C0 and C
  body     the body arms (bench/body.json): the bodies, the upstream answering them, the
           front Envoy of arms P, T, H0, H, M1 and M3, their answer check, their wrk scripts
  measure  CPU per request (/proc, alternating bursts), saturation throughput (wrk),
           latency at a fixed open-loop rate (bench/openloop), RSS
  report   the results JSON, and the tables printed and written into BENCHMARKS.md
"""
