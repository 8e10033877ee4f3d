"""A fleet: three Envoys on loopback sharing one runtime folder (the mesh file's
weights.runtime_dir) and a real Prometheus scraping all three (and a second one, which a test
stops). `shift` reaches every Envoy, a rollout judged from Prometheus reaches 100 %, one that
fails on one sidecar only is rolled back within one interval on the fleet-wide error rate, a
stalled sidecar is reported by name, and Ctrl-C, a lost Prometheus and a quiet step each leave the
line on its stable deployment."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import harness
from harness import meshver

CATALOG = {"services": [{
    "name": "user",
    "match": {"path_prefixes": ["/register"]},
    "default_version": "2",
    "deployments": [{"version": "2.0.3", "weight": 100}, {"version": "2.1.0", "weight": 0}],
}]}
V2 = {"x-api-version": "2"}
# How soon a shift must be in force on every Envoy (what `shift` prints: its first check after the
# folder's swap already finds all three on the new version, 2–4 ms after it here).
SHIFT_REACHES_ALL_WITHIN_S = 5.0
INTERVAL = "3s"


class Stack:
    """The upstreams, the three Envoys and Prometheus. fleet-c's user-2.1.0 cluster goes to an
    upstream of its own (`c_candidate`), which a test can make fail."""

    def __init__(self, workdir):
        self.upstreams, self.fleet, self.prometheus, self.spare_prometheus = {}, None, None, None
        user = harness.compiled_catalog(CATALOG)["services"][0]
        self.old, self.new = (d["route"] for d in user["deployments"])
        try:
            for d in user["deployments"]:
                self.upstreams[d["route"]] = harness.Upstream("user", d["version"])
            self.c_candidate = harness.Upstream("user", "2.1.0")
            self.catalog = workdir / "catalog.json"
            self.catalog.write_text(json.dumps(CATALOG))
            self.runtime_dir = workdir / "runtime"
            self.fleet = harness.Fleet(CATALOG, self.upstreams, self.runtime_dir,
                                       own={2: {self.new: self.c_candidate}})
            self.envoys = self.fleet.envoys
            # Two, started together: the second is the one a test stops mid-rollout.
            self.prometheus = scraping(self.envoys, "prometheus")
            self.spare_prometheus = scraping(self.envoys, "spare-prometheus")
            for prometheus in (self.prometheus, self.spare_prometheus):
                scraped(prometheus, self.envoys)
        except BaseException:
            self.stop()
            raise

    def cli(self, *args, timeout=60):
        return meshver(*args, "--runtime-dir", self.runtime_dir, "--catalog", self.catalog,
                       *self.fleet.admin_flags(), timeout=timeout)

    def candidate_weights(self):
        """user-2.1.0's weight on each Envoy now, as it routes."""
        return [envoy.weights()[self.new] for envoy in self.envoys]

    def stop(self):
        for part in (self.spare_prometheus, self.prometheus, self.fleet):
            if part:
                part.stop()
        for upstream in [*self.upstreams.values(), getattr(self, "c_candidate", None)]:
            if upstream:
                upstream.stop()


def scraping(envoys, name):
    """A Prometheus scraping `envoys` every second (without waiting for its first scrapes)."""
    return harness.Prometheus([f"127.0.0.1:{e.admin_port}" for e in envoys], rule_files=(), name=name)


def scraped(prometheus, envoys):
    """Once `prometheus` has scraped every Envoy: it scrapes new targets only after its
    discovery's first update, some 5 s after it starts."""
    harness.wait_for(lambda: [value for _, value in prometheus.query("up")] == [1.0] * len(envoys), 30,
                     f"{prometheus.name} scraping every Envoy")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fleet"))
    yield s
    s.stop()
    for envoy in s.envoys:
        envoy.check_no_wasm_critical()


@pytest.fixture
def rolled_back(stack):
    """Every test starts and ends with the line on 2.0.3, fleet-c's candidate healthy."""
    assert stack.cli("rollback", "user").returncode == 0
    yield stack
    fault(stack.c_candidate, 0)
    done = stack.cli("rollback", "user")
    assert done.returncode == 0, done.stderr


def fault(upstream, fail_rate):
    assert harness.http1("POST", f"{upstream.url}/__fault?fail_rate={fail_rate}").status == 200


def load(stack):
    """Requests to the 2.x line through every Envoy at once, for `with`."""
    def sender(envoy):
        return lambda: harness.http1("POST", envoy.url + "/register", headers=V2, body="{}", timeout=5).status
    return harness.Load([sender(envoy) for envoy in stack.envoys])


def test_a_shift_reaches_every_envoy_through_the_folder(rolled_back):
    stack = rolled_back
    # What render envoy made of weights.runtime_dir: the folder under the admin layer.
    for envoy in stack.envoys:
        layers = envoy.config["layered_runtime"]["layers"]
        assert [layer["name"] for layer in layers] == ["static", "fleet", "admin"]
        assert layers[1]["disk_layer"] == {"symlink_root": str(stack.runtime_dir / "current")}
    done = stack.cli("shift", "user", "--to", "2.1.0", "--weight", "100")
    assert done.returncode == 0, done.stderr
    assert "user user-v2: 2.1.0 100%, 2.0.3 0%" in done.stdout
    took = float(re.search(r"all 3 Envoys use it, the last after ([0-9.]+)s", done.stdout).group(1))
    assert took < SHIFT_REACHES_ALL_WITHIN_S, done.stdout
    print(f"shift in force on all 3 Envoys {took * 1000:.0f} ms after the folder's swap")
    assert stack.candidate_weights() == [100, 100, 100]
    # Routing follows on each Envoy: every request goes to the candidate.
    for envoy in stack.envoys:
        answers = [harness.http1("POST", envoy.url + "/register", headers=V2, body="{}") for _ in range(5)]
        assert {a.json["version"] for a in answers} == {"2.1.0"}, envoy.name
    # The same fleet named by a file.
    fleet_file = stack.runtime_dir.parent / "fleet.txt"
    fleet_file.write_text("# the three Envoys\n" + "".join(f"{e.name}={e.admin_url}\n" for e in stack.envoys))
    status = meshver("status", "--json", "--runtime-dir", stack.runtime_dir, "--catalog", stack.catalog,
                     "--fleet", fleet_file)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert [(e["name"], e["converged"]) for e in report["envoys"]] == [("fleet-a", True), ("fleet-b", True),
                                                                        ("fleet-c", True)]
    weights = {d["version"]: d["weight"] for d in report["services"][0]["lines"][0]["deployments"]}
    assert weights == {"2.0.3": 0, "2.1.0": 100}


def test_an_admin_layer_value_from_a_single_envoy_shift_is_cleared_by_the_fleet(rolled_back):
    """`shift --admin` on one Envoy (a demo) sets its admin layer, which is above the folder: the
    fleet's next write removes it there, so that every Envoy uses the folder's value."""
    stack = rolled_back
    one = stack.envoys[0]
    alone = meshver("shift", "user", "--to", "2.1.0", "--weight", "60", "--admin", one.admin_url)
    assert alone.returncode == 0, alone.stderr
    assert stack.candidate_weights() == [60, 0, 0]
    done = stack.cli("shift", "user", "--to", "2.1.0", "--weight", "20")
    assert done.returncode == 0, done.stderr
    assert stack.candidate_weights() == [20, 20, 20]
    entry = harness.http1("GET", one.admin_url + "/runtime").json["entries"][f"routing.user-v2.{stack.new}"]
    assert entry["layer_values"][-1] == "", entry


def test_dry_run_shows_the_steps_and_the_queries_and_changes_nothing(rolled_back):
    stack = rolled_back
    before = os.readlink(stack.runtime_dir / "current")
    done = stack.cli("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", "30s",
                     "--prometheus", stack.prometheus.url, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "step 1/2: user-v2 2.1.0 50%, 2.0.3 50%" in done.stdout
    assert "at least 20 requests" in done.stdout
    assert (f'sum(increase(envoy_cluster_upstream_rq_total{{envoy_cluster_name="{stack.new}"}}[30000ms]))'
            in done.stdout), done.stdout
    assert "histogram_quantile(0.99, sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket" in done.stdout
    assert os.readlink(stack.runtime_dir / "current") == before
    # A Prometheus that does not answer is refused before anything changes.
    nobody = f"http://127.0.0.1:{harness.free_port()}"
    refused = stack.cli("rollout", "user", "--to", "2.1.0", "--prometheus", nobody)
    assert refused.returncode == 1 and "cannot read Prometheus at" in refused.stderr, refused.stderr
    # So is a selector Prometheus cannot parse.
    bad = stack.cli("rollout", "user", "--to", "2.1.0", "--prometheus", stack.prometheus.url,
                    "--prometheus-selector", "job=mesh")
    assert bad.returncode == 1 and "was refused" in bad.stderr, bad.stderr
    assert os.readlink(stack.runtime_dir / "current") == before


def rollout(stack):
    return stack.cli("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", INTERVAL,
                     "--min-requests", "10", "--prometheus", stack.prometheus.url, timeout=120)


def test_a_quiet_step_waits_for_min_requests_then_rolls_back(rolled_back):
    """No traffic: the step waits up to 3 more intervals for --min-requests, then cannot judge."""
    stack = rolled_back
    done = stack.cli("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", "1s",
                     "--min-requests", "5", "--prometheus", stack.prometheus.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fewer than --min-requests 5; waiting up to 3s more" in done.stdout, done.stdout
    assert re.search(r"rolled back user to 2\.0\.3: only 0 requests over the last [45]s, fewer than --min-requests 5",
                     done.stderr), done.stderr
    assert stack.candidate_weights() == [0, 0, 0]


def test_a_healthy_rollout_judged_from_prometheus_reaches_100(rolled_back):
    stack = rolled_back
    with load(stack) as traffic:
        done = rollout(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "user 2.1.0 now takes 100% of user-v2" in done.stdout
    assert re.search(r"step 1/2: \S+ at 50%: ok, \d+ requests", done.stdout), done.stdout
    assert stack.candidate_weights() == [100, 100, 100]
    assert set(traffic.statuses) == {200}


def test_a_deployment_failing_on_one_sidecar_is_rolled_back_within_one_interval(rolled_back):
    """Only fleet-c's user-2.1.0 upstream fails: a third of the candidate's requests. No one
    Envoy's admin sees the whole of it; the fleet-wide error rate from Prometheus does, and the
    rollout stops at its first step."""
    stack = rolled_back
    fault(stack.c_candidate, 1)
    with load(stack):
        done = rollout(stack)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "step 2/2" not in done.stdout, done.stdout
    reason = re.search(r"meshver: rolled back user to 2\.0\.3: error rate ([0-9.]+)% > 1\.0%", done.stderr)
    assert reason, done.stderr
    # About a third of the candidate's requests went through fleet-c; never all of them.
    assert 10 < float(reason.group(1)) < 70, done.stderr
    assert stack.candidate_weights() == [0, 0, 0]


def test_a_stalled_envoy_is_named(rolled_back):
    """fleet-b is paused (SIGSTOP): shift and status name it, and a rollout rolls back at its
    first step, naming it, within the convergence deadline."""
    stack = rolled_back
    stalled = stack.envoys[1]
    os.kill(stalled.proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        shifted = stack.cli("shift", "user", "--to", "2.1.0", "--weight", "10", "--converge-timeout", "2s")
        elapsed = time.monotonic() - start
        status = stack.cli("status", "--converge-timeout", "1s")
        rolled = stack.cli("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", INTERVAL,
                           "--prometheus", stack.prometheus.url, "--converge-timeout", "1s")
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    named = f"  fleet-b ({stalled.admin_url}): not answering"
    assert shifted.returncode == 1, shifted.stdout + shifted.stderr
    assert "1 of 3 Envoys do not use the weights written" in shifted.stderr, shifted.stderr
    assert named in shifted.stderr and "fleet-a" not in shifted.stderr and "fleet-c" not in shifted.stderr
    assert elapsed < 15, elapsed
    assert status.returncode == 1 and f"LAGGING fleet-b ({stalled.admin_url}): not answering" in status.stdout
    assert rolled.returncode == 1, rolled.stdout + rolled.stderr
    assert ("rolled back user to 2.0.3: 1 of 3 Envoys did not use the weights of step 1/2" in rolled.stderr
            and named in rolled.stderr), rolled.stderr
    # Resumed, it loads the folder's newest version (the rollback), as status shows.
    harness.wait_for(lambda: stack.candidate_weights() == [0, 0, 0], 10, "fleet-b resumed with the folder's weights")
    assert stack.cli("status").returncode == 0


def rollout_in_background(stack, prometheus_url, interval):
    return subprocess.Popen([harness.meshver_cli(), "rollout", "user", "--to", "2.1.0", "--steps", "50,100",
                             "--interval", interval, "--prometheus", prometheus_url, "--runtime-dir", str(stack.runtime_dir),
                             "--catalog", str(stack.catalog), *stack.fleet.admin_flags()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_rolls_the_fleet_back_and_exits_130(rolled_back):
    stack = rolled_back
    proc = rollout_in_background(stack, stack.prometheus.url, "30s")
    out, err = harness.interrupt(proc, lambda: stack.candidate_weights() == [50, 50, 50],
                                 "the first step on every Envoy")
    assert proc.returncode == 130, out + err
    assert "interrupted at step 1/2" in err and "rolled back user to 2.0.3 (all of user-v2)" in err, err
    assert stack.candidate_weights() == [0, 0, 0]


def test_a_lost_prometheus_rolls_the_fleet_back(rolled_back):
    """Prometheus stops during a step: after its retries (about 5 s) the rollout cannot judge the
    step, so it rolls back through the folder, which it can still write, and says so."""
    stack = rolled_back
    own = stack.spare_prometheus
    try:
        proc = rollout_in_background(stack, own.url, "4s")
        harness.wait_for(lambda: stack.candidate_weights() == [50, 50, 50], 15, "the first step on every Envoy", proc)
    finally:
        own.stop()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, out + err
    assert f"meshver: lost Prometheus at {own.url}" in err and "cannot judge it" in err, err
    assert "rolled back user to 2.0.3 (all of user-v2)" in err, err
    assert stack.candidate_weights() == [0, 0, 0]


def test_an_envoy_watching_another_folder_is_named(rolled_back, tmp_path):
    """An Envoy rendered with another runtime folder, listed with the fleet: the folder's name in
    each version tells them apart, even at the same version number with the same weights."""
    stack = rolled_back
    config = harness.render_envoy(harness.free_port(), [{"name": "edge", "port": harness.free_port(),
                                                          "catalog": CATALOG}],
                                  {route: up.port for route, up in stack.upstreams.items()},
                                  mesh_fields={"weights": {"runtime_dir": str(tmp_path / "elsewhere")}})
    with harness.Envoy(config, name="elsewhere") as elsewhere:
        done = stack.cli("shift", "user", "--to", "2.1.0", "--weight", "10", "--converge-timeout", "1s",
                         "--admin", f"elsewhere={elsewhere.admin_url}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 4 Envoys do not use the weights written" in done.stderr, done.stderr
    assert f"  elsewhere ({elsewhere.admin_url}): watches another runtime folder" in done.stderr, done.stderr
    assert stack.candidate_weights() == [10, 10, 10]
