"""Istio as the engine (`shift`, `rollback` and `rollout` with `--istio`). Kubernetes cannot run
here, so the VirtualService each command writes is checked against Istio's own CRD schemas, and
what it asks of kubectl is checked against a recorded sequence: a kubectl stand-in on PATH
(tests/fixtures/istio-engine/kubectl.py) holds the resources `meshver render istio` made, answers
`get`, applies merge patches as the API server does, and records every call with its stdin; the
sequence must equal the one checked in beside it (`MESHVER_RECORD=1` writes it again)."""

import json
import os
import re
import shutil
import subprocess

import pytest

import harness
from harness import ROOT, meshver
from test_cli_render import first_match, load_yaml_like_kubernetes, validate_manifests

FIXTURES = ROOT / "tests/fixtures/istio-engine"
CATALOG = "examples/catalog.json"
NAMESPACE = "shop"


class Cluster:
    """The kubectl stand-in on PATH, holding what `render istio --namespace shop` made."""

    def __init__(self, folder):
        self.folder = folder
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        shutil.copy(FIXTURES / "kubectl.py", bin_dir / "kubectl")
        (bin_dir / "kubectl").chmod(0o755)
        self.log, self.state = folder / "kubectl.log", folder / "state.json"
        rendered = meshver("render", "istio", CATALOG, "--namespace", NAMESPACE)
        assert rendered.returncode == 0, rendered.stderr
        services = {d["metadata"]["name"]: d for d in load_yaml_like_kubernetes(rendered.stdout)
                    if d["kind"] == "VirtualService"}
        self.state.write_text(json.dumps({NAMESPACE: services}))
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                    "KUBECTL_LOG": str(self.log), "KUBECTL_STATE": str(self.state)}

    def meshver(self, *args):
        return subprocess.run([harness.meshver_cli(), *map(str, args)], cwd=ROOT, env=self.env,
                                      capture_output=True, text=True, timeout=120)

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def virtual_service(self, name="user"):
        return json.loads(self.state.read_text())[NAMESPACE][name]


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def istio(*args):
    return [*args, "--istio", "--namespace", NAMESPACE, "--catalog", CATALOG]


def check_recorded(calls, name):
    """The kubectl calls equal the checked-in sequence `name`.json."""
    path = FIXTURES / f"{name}.json"
    if os.environ.get("MESHVER_RECORD"):
        path.write_text(json.dumps(calls, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert calls == expected, f"kubectl calls differ from {path.relative_to(ROOT)}"


def line_weights(virtual_service, line="user-v2"):
    """{subset: weight} of the line's weighted route."""
    route = next(r for r in virtual_service["spec"]["http"] if r["name"] == line)
    return {to["destination"]["subset"]: to["weight"] for to in route["route"]}


def check_valid(virtual_service):
    """The VirtualService as the API server would hold it is valid against Istio's CRD schema."""
    validate_manifests(json.dumps(virtual_service))


def sticky_choice(virtual_service, value):
    """The subset the VirtualService sends a sticky number `value` of the 2.x line to."""
    chosen = first_match(virtual_service["spec"]["http"],
                         {"x-meshver-route": "user-v2", "x-meshver-sticky": f"{value:04d}"})
    return [to["destination"]["subset"] for to in chosen]


def test_shift_patches_the_whole_route_list(cluster):
    result = cluster.meshver(*istio("shift", "user", "--to", "2.1.0", "--weight", "25", "--apply"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "user user-v2: 2.1.0 25%, 2.0.3 75% (VirtualService user in shop patched)\n"
    calls = cluster.calls()
    check_recorded(calls, "shift")
    assert [c["args"][2:4] for c in calls] == [["get", "virtualservice.networking.istio.io"],
                                              ["patch", "virtualservice.networking.istio.io"]]
    vs = cluster.virtual_service()
    check_valid(vs)
    assert line_weights(vs) == {"user-2-1-0": 25, "user-2-0-3": 75}
    # The sticky buckets follow: a client below 25 is on 2.1.0, as Envoy's header_name would choose.
    for value in range(0, 10000, 13):
        assert sticky_choice(vs, value) == ["user-2-1-0" if value % 100 < 25 else "user-2-0-3"], value
    # Everything but the routes is as render istio made it.
    assert vs["spec"]["hosts"] == ["user.shop.svc.cluster.local"]


def test_rollback_puts_the_line_on_stable(cluster):
    assert cluster.meshver(*istio("shift", "user", "--to", "2.1.0", "--weight", "60", "--apply")).returncode == 0
    cluster.log.unlink()
    result = cluster.meshver(*istio("rollback", "user", "--apply"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "rolled back user user-v2: 2.0.3 100% (VirtualService user in shop patched)\n"
    check_recorded(cluster.calls(), "rollback")
    vs = cluster.virtual_service()
    check_valid(vs)
    assert line_weights(vs) == {"user-2-1-0": 0, "user-2-0-3": 100}
    assert {tuple(sticky_choice(vs, v)) for v in range(0, 10000, 7)} == {("user-2-0-3",)}


def test_without_apply_the_patch_is_printed_and_nothing_written(cluster):
    before = cluster.virtual_service()
    result = cluster.meshver(*istio("shift", "user", "--to", "2.1.0", "--weight", "40"))
    assert result.returncode == 0, result.stderr
    patch = json.loads(result.stdout)
    assert list(patch) == ["spec"] and list(patch["spec"]) == ["http"]
    assert [c["args"][2] for c in cluster.calls()] == ["get"]
    assert cluster.virtual_service() == before
    # What --apply would have sent, and valid once merged.
    merged = {**before, "spec": {**before["spec"], **patch["spec"]}}
    check_valid(merged)
    assert line_weights(merged) == {"user-2-1-0": 40, "user-2-0-3": 60}


def test_status_refuses_istio_and_says_where_to_look(cluster):
    """status reads Envoy admins only: with --istio it says so in one line and asks kubectl nothing."""
    for watch in ([], ["--watch", "--count", "1"]):
        result = cluster.meshver("status", *watch, "--istio", "--catalog", CATALOG)
        assert result.returncode == 1
        assert result.stderr.startswith("meshver: status reads Envoys' admins, not Istio's VirtualServices"), result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert cluster.calls() == []


def test_other_lines_keep_their_live_weights(cluster):
    """Only the line asked for changes: another line's live weights are read back from the
    VirtualService and written as they are (the merge patch replaces the whole route list)."""
    catalog = json.loads((ROOT / CATALOG).read_text())
    user = next(s for s in catalog["services"] if s["name"] == "user")
    assert len({d["version"].split(".")[0] for d in user["deployments"]}) >= 2
    assert cluster.meshver(*istio("shift", "user", "--to", "2.1.0", "--weight", "30", "--apply")).returncode == 0
    assert cluster.meshver(*istio("shift", "user", "--to", "1.4.0", "--weight", "100", "--apply")).returncode == 0
    assert line_weights(cluster.virtual_service()) == {"user-2-1-0": 30, "user-2-0-3": 70}


def test_istio_refusals(cluster):
    result = cluster.meshver("shift", "user", "--to", "2.1.0", "--weight", "5", "--istio")
    assert result.returncode == 2 and "--catalog" in result.stderr, result.stderr
    result = cluster.meshver("shift", "user", "--to", "2.1.0", "--weight", "5", "--istio", "--catalog", CATALOG,
                             "--admin", "127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    result = cluster.meshver("rollback", "user", "--istio", "--namespace", "elsewhere", "--catalog", CATALOG)
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("meshver: `kubectl -n elsewhere get virtualservice.networking.istio.io user -o json` "
                               "failed: Error from server (NotFound)"), lines[0]


# --- rollout: judged from Istio's metrics in a real Prometheus ------------------------------

class IstioMetrics:
    """What Istio's proxies would report for the user service in `shop`, as a scrape target: per
    (reporter, version, response code) a request rate a second, counted since the start, every
    request under 5 ms. Stands in for the mesh's sidecars, which cannot run here."""

    LABELS = ('reporter="{reporter}",destination_service_name="user",destination_service_namespace="shop",'
              'destination_version="{version}",response_code="{code}"')

    def __init__(self, rates):
        import http.server
        import threading
        import time
        self.rates, self.started, self.clock = rates, time.monotonic(), time.monotonic
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = metrics.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", harness.free_port()), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def exposition(self):
        elapsed = self.clock() - self.started
        lines = ["# TYPE istio_requests_total counter"]
        histogram = ["# TYPE istio_request_duration_milliseconds histogram"]
        for (reporter, version, code), rate in sorted(self.rates.items()):
            labels = self.LABELS.format(reporter=reporter, version=version, code=code)
            count = int(rate * elapsed)
            lines.append(f"istio_requests_total{{{labels}}} {count}")
            for le in ("5", "100", "+Inf"):
                histogram.append(f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} {count}')
            histogram.append(f"istio_request_duration_milliseconds_sum{{{labels}}} {count * 3}")
            histogram.append(f"istio_request_duration_milliseconds_count{{{labels}}} {count}")
        return "\n".join(lines + histogram) + "\n"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def istio_metrics():
    """Start IstioMetrics(rates) and a real Prometheus scraping it every second; both stopped."""
    started = []

    def start(rates):
        metrics = IstioMetrics(rates)
        started.append(metrics)
        prometheus = harness.Prometheus([metrics.target], rule_files=(), name="istio-prometheus")
        started.append(prometheus)
        def scraped_twice():
            series = prometheus.api("query", query="istio_requests_total[10s]")["result"]
            return len(series) == len(rates) and all(len(s["values"]) >= 2 for s in series)

        harness.wait_for(scraped_twice,
                         30, "Prometheus holding two scrapes of the Istio metrics")
        return prometheus

    yield start
    for thing in reversed(started):
        thing.stop()


def rollout(cluster, prometheus, *flags):
    return cluster.meshver(*istio("rollout", "user", "--to", "2.1.0", "--apply", "--prometheus", prometheus.url,
                                  "--interval", "3s", *flags))


def put_candidate_at_zero(cluster):
    """The demo catalog gives 2.1.0 10%: a shadow step needs it at 0 first (then the log restarts)."""
    assert cluster.meshver(*istio("rollback", "user", "--apply")).returncode == 0
    cluster.log.unlink()


def patches(calls):
    return [c["stdin"] for c in calls if c["args"][2] == "patch"]


def merged(cluster, patch):
    vs = cluster.virtual_service()
    return {**vs, "spec": {**vs["spec"], **patch["spec"]}}


def assert_error_rate(stderr, prefix):
    """One line: `prefix` and an error rate of (nearly) 100%: Prometheus answers the request and
    5xx queries one after the other, and a scrape may land between them."""
    found = re.match(re.escape(prefix) + r"error rate (\d+\.\d)% > 1\.0%", stderr)
    assert found and float(found[1]) >= 99 and len(stderr.splitlines()) == 1, stderr


HEALTHY = {("source", "2.1.0", "200"): 20, ("source", "2.0.3", "200"): 20, ("destination", "2.1.0", "200"): 20}


def test_a_healthy_rollout_shadows_then_reaches_100(cluster, istio_metrics):
    prometheus = istio_metrics(HEALTHY)
    put_candidate_at_zero(cluster)
    result = rollout(cluster, prometheus, "--steps", "50,100", "--shadow", "10%")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shadow: user-2.1.0 mirrors 10% of user-v2's GET, HEAD and OPTIONS requests: ok" in result.stdout
    assert "step 1/2: user-2.1.0 at 50%: ok" in result.stdout
    assert "user 2.1.0 now takes 100% of user-v2" in result.stdout
    calls = cluster.calls()
    check_recorded(calls, "rollout-passes")
    sent = patches(calls)
    assert len(sent) == 4
    # The shadow: a copy of each route of the line for safe methods, mirroring 10% to 2.1.0.
    mirrored = [r for r in sent[0]["spec"]["http"] if "mirror" in r]
    assert mirrored and all(r["mirror"] == {"host": "user.shop.svc.cluster.local", "subset": "user-2-1-0"}
                            and r["mirrorPercentage"] == {"value": 10.0}
                            and all(m["method"] == {"regex": "^(GET|HEAD|OPTIONS)$"} for m in r["match"])
                            for r in mirrored)
    assert all("mirror" not in r for p in sent[1:] for r in p["spec"]["http"])
    for patch in sent:
        check_valid(merged(cluster, patch))
    assert [line_weights(merged(cluster, p)) for p in sent[1:]] == [
        {"user-2-1-0": 0, "user-2-0-3": 100},
        {"user-2-1-0": 50, "user-2-0-3": 50},
        {"user-2-1-0": 100, "user-2-0-3": 0}]
    assert line_weights(cluster.virtual_service()) == {"user-2-1-0": 100, "user-2-0-3": 0}


def test_a_failing_rollout_is_rolled_back_on_istios_error_rate(cluster, istio_metrics):
    prometheus = istio_metrics({("source", "2.1.0", "503"): 20, ("source", "2.0.3", "200"): 20})
    put_candidate_at_zero(cluster)
    result = rollout(cluster, prometheus, "--steps", "50,100")
    assert result.returncode == 1, result.stdout + result.stderr
    assert_error_rate(result.stderr, "meshver: rolled back user to 2.0.3: ")
    assert "step 2/2" not in result.stdout
    check_recorded(cluster.calls(), "rollout-rolled-back")
    assert line_weights(cluster.virtual_service()) == {"user-2-1-0": 0, "user-2-0-3": 100}


def test_a_candidate_failing_in_shadow_gets_no_weight(cluster, istio_metrics):
    prometheus = istio_metrics({("destination", "2.1.0", "503"): 20, ("source", "2.0.3", "200"): 20})
    put_candidate_at_zero(cluster)
    result = rollout(cluster, prometheus, "--steps", "50,100", "--shadow", "20%", "--shadow-all-methods")
    assert result.returncode == 1, result.stdout + result.stderr
    assert_error_rate(result.stderr, "meshver: stopped the rollout of user 2.1.0 in shadow: ")
    calls = cluster.calls()
    check_recorded(calls, "rollout-stopped-in-shadow")
    sent = patches(calls)
    # Every method mirrored: the line's own routes carry the mirror, no method-matching copies.
    assert all("method" not in m for r in sent[0]["spec"]["http"] for m in r["match"])
    assert [line_weights(merged(cluster, p)) for p in sent] == [{"user-2-1-0": 0, "user-2-0-3": 100}] * 2
    assert all("mirror" not in r for r in cluster.virtual_service()["spec"]["http"])


def test_rollout_dry_run_shows_the_istio_queries(cluster):
    result = cluster.meshver(*istio("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--dry-run",
                                    "--prometheus", "http://127.0.0.1:1", "--shadow", "10"))
    # 2.1.0 takes 10% in the demo catalog: a shadow step is refused before any plan.
    assert result.returncode == 1 and "already takes 10% of user-v2" in result.stderr, result.stderr
    result = cluster.meshver(*istio("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--dry-run",
                                    "--prometheus", "http://127.0.0.1:1"))
    assert result.returncode == 0, result.stderr
    assert ('  requests: sum(increase(istio_requests_total{reporter="source",destination_service_name="user",'
            'destination_version="2.1.0",destination_service_namespace="shop"}[30000ms]))') in result.stdout, result.stdout
    assert "step 2/2: user-v2 2.1.0 100%, 2.0.3 0%" in result.stdout
    assert [c["args"][2] for c in cluster.calls()] == ["get", "get"]
    result = cluster.meshver(*istio("rollout", "user", "--to", "2.1.0", "--prometheus", "http://127.0.0.1:1"))
    assert result.returncode == 1 and "give --apply" in result.stderr, result.stderr
    result = cluster.meshver(*istio("rollout", "user", "--to", "2.1.0", "--apply"))
    assert result.returncode == 1 and "give --prometheus URL" in result.stderr, result.stderr
