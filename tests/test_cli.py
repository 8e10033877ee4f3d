"""`meshver` against the real Envoy and real upstreams: a config that fails `check` is refused
by Envoy, status, shift, rollback, and rollouts that finish or roll back by themselves."""

import json
import subprocess
import time

import pytest

import harness
from harness import meshver

# Only fields every version of the catalog has: this file tests the CLI, not the filter.
CATALOG = {"services": [{
    "name": "user",
    "match": {"path_prefixes": ["/register", "/login"]},
    "default_version": "1",
    "deployments": [
        {"version": "1.4.0", "weight": 100},
        {"version": "2.0.3", "weight": 90},
        {"version": "2.1.0", "weight": 10},
    ],
}]}
V2 = {"x-api-version": "2"}


class Stack(harness.EnvoyStack):
    """Upstreams for CATALOG, and Envoy serving what `meshver render envoy` made of them.

    `old` and `new` are the route keys (and clusters) of the user 2.x line's deployments,
    oldest first, as `meshver check --json` names them; `upstreams` is keyed by route key.
    """

    def __init__(self, workdir):
        super().__init__()
        user = harness.compiled_catalog(CATALOG)["services"][0]
        self.old, self.new = next(line for line in user["lines"] if line["major"] == 2)["deployments"]
        with self.starting():
            for d in user["deployments"]:
                self.upstreams[d["route"]] = harness.Upstream("user", d["version"])
            self.catalog = workdir / "catalog.json"
            self.catalog.write_text(json.dumps(CATALOG, indent=2))
            mesh = {"admin": f"127.0.0.1:{harness.free_port()}", "wasm": str(harness.WASM),
                    "endpoints": {route: f"127.0.0.1:{u.port}" for route, u in self.upstreams.items()},
                    "listeners": [{"name": "edge", "address": f"127.0.0.1:{harness.free_port()}",
                                   "catalog": "catalog.json"}]}
            (workdir / "mesh.json").write_text(json.dumps(mesh))
            rendered = meshver("render", "envoy", workdir / "mesh.json", "-o", workdir / "envoy.json")
            assert rendered.returncode == 0, rendered.stderr
            self.config = json.loads((workdir / "envoy.json").read_text())
            self.envoy = harness.Envoy(self.config, name="cli-envoy")
        self.admin = self.envoy.admin_url

    def register(self, headers=V2):
        return harness.http1("POST", self.envoy.url + "/register", headers=headers, body="{}", timeout=5)

    def versions(self, count, headers=V2):
        return [self.register(headers).json["version"] for _ in range(count)]

    def line_weights(self):
        """(old, new): the 2.x line's weights in Envoy now."""
        weights = self.envoy.weights()
        return weights[self.old], weights[self.new]

    def fault(self, route, fail_rate=0, delay_ms=0):
        answer = harness.http1("POST", f"{self.upstreams[route].url}/__fault?fail_rate={fail_rate}"
                                       f"&delay_ms={delay_ms}")
        assert answer.status == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("cli")) as s:
        yield s
    s.envoy.check_no_wasm_critical()


def load(stack, threads=2):
    """Background requests to the 2.x line while a rollout runs, stopped on exit."""
    return harness.Load([lambda: stack.register().status] * threads)


def one_line_error(result, pattern):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshver: ") and "; " in lines[0], result.stderr
    assert pattern in lines[0], lines[0]


# --- check and Envoy agree ---------------------------------------------------------------

def test_a_config_check_refuses_is_refused_by_envoy_too(stack, tmp_path):
    bad = dict(CATALOG, route_header="x-route")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    check = meshver("check", tmp_path / "bad.json")
    assert check.returncode == 1
    message = check.stderr.split(": $.route_header: ", 1)[1].strip()
    # The same bootstrap that serves the good catalog, with the bad one: Envoy must not start.
    config = json.loads(json.dumps(stack.config))
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = harness.free_port()
        for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            if f["name"] == "envoy.filters.http.wasm":
                f["typed_config"]["config"]["configuration"]["value"] = json.dumps(bad)
    config["admin"]["address"]["socket_address"]["port_value"] = harness.free_port()
    (tmp_path / "envoy.json").write_text(json.dumps(config))
    # Run directly, not through harness.Envoy: its [critical][wasm] lines are expected here.
    run = subprocess.run([str(harness.envoy_binary()), "-c", str(tmp_path / "envoy.json"),
                          "--disable-hot-restart", "--base-id", str(harness.next_base_id()),
                          "--concurrency", "1"], capture_output=True, text=True, timeout=30)
    assert run.returncode != 0
    assert f"$.route_header: {message}" in run.stdout + run.stderr
    # And the catalog check accepts is the one serving traffic in `stack`.
    assert meshver("check", stack.catalog).returncode == 0
    assert stack.register().status == 200


# --- status ------------------------------------------------------------------------------

def test_status_shows_weights_and_traffic(stack):
    stack.versions(30)
    result = meshver("status", "--admin", stack.admin, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    line = next(l for l in report["services"][0]["lines"] if l["major"] == 2)
    assert line["route"] == "user-v2" and line["runtime_prefix"] == "routing.user-v2"
    rows = {d["version"]: d for d in line["deployments"]}
    assert (rows["2.0.3"]["weight"], rows["2.1.0"]["weight"]) == (90, 10)
    assert rows["2.0.3"]["weight_source"] == "config" and rows["2.0.3"]["stable"]
    assert rows["2.0.3"]["requests"] + rows["2.1.0"]["requests"] >= 30
    assert rows["2.0.3"]["errors_5xx"] == 0 and rows["2.0.3"]["error_rate"] == 0
    # Envoy records loopback request times in whole milliseconds: 0 is a real p99 here.
    assert rows["2.0.3"]["p99_ms"] is None or 0 <= rows["2.0.3"]["p99_ms"] < 5000

    table = meshver("status", "--admin", stack.admin, "--catalog", stack.catalog)
    assert table.returncode == 0, table.stderr
    assert "SERVICE" in table.stdout and "P99" in table.stdout
    assert "2.0.3 (stable)" in table.stdout and "user-2.1.0" in table.stdout


def test_status_shows_what_the_filter_counted(stack):
    """The filter's own counters (meshver_requests_total), summed per service over their other
    labels; they reach Envoy within a second. Only this test asks for version 9; the earlier
    tests' last requests may still be on their way, so forwarded is at least what was sent."""
    before = json.loads(meshver("status", "--admin", stack.admin, "--json").stdout)["services"][0]["filter"]
    refused = before["refused"].get("unsupported_version", 0)
    stack.versions(5)
    for _ in range(2):
        assert stack.register({"x-api-version": "9"}).status == 400
        assert stack.register({}).status == 200  # the default, the 1.x line

    def counted():
        report = json.loads(meshver("status", "--admin", stack.admin, "--json").stdout)
        user = report["services"][0]
        assert user["name"] == "user"
        done = (user["filter"]["refused"].get("unsupported_version") == refused + 2
                and user["filter"]["forwarded"] >= before["forwarded"] + 7)
        return user["filter"] if done else None

    after = harness.wait_for(counted, 10, "the filter's counts in meshver status")
    assert after["deprecated"] == {}  # nothing in this catalog is deprecated
    table = meshver("status", "--admin", stack.admin).stdout
    assert f"user: {after['forwarded']} forwarded, {sum(after['refused'].values())} refused (" in table, table


# --- shift and rollback ------------------------------------------------------------------

def test_shift_moves_live_traffic_and_rollback_moves_it_back(stack):
    result = meshver("shift", "user", "--to", "2.1.0", "--weight", "100", "--admin", stack.admin)
    assert result.returncode == 0, result.stderr
    assert stack.line_weights() == (0, 100)
    assert set(stack.versions(50)) == {"2.1.0"}

    status = json.loads(meshver("status", "--admin", stack.admin, "--json").stdout)
    rows = {d["version"]: d for d in status["services"][0]["lines"][1]["deployments"]}
    assert (rows["2.1.0"]["weight"], rows["2.1.0"]["weight_source"]) == (100, "runtime")

    result = meshver("rollback", "user", "--admin", stack.admin)
    assert result.returncode == 0, result.stderr
    assert "rolled back user user-v2: 2.0.3 100%" in result.stdout
    assert set(stack.versions(50)) == {"2.0.3"}


def test_bad_input_gets_one_line_that_says_what_to_do(stack):
    one_line_error(meshver("shift", "nosuch", "--to", "2.1.0", "--weight", "5", "--admin", stack.admin),
                   'service "nosuch" is not in the catalog')
    one_line_error(meshver("shift", "user", "--to", "9.9.9", "--weight", "5", "--admin", stack.admin),
                   "user has no deployment 9.9.9")
    one_line_error(meshver("shift", "user", "--to", "2.1.0", "--weight", "150", "--admin", stack.admin),
                   'weight "150"')
    one_line_error(meshver("rollback", "user", "--line", "7", "--admin", stack.admin), "no 7.x line")
    nobody = f"127.0.0.1:{harness.free_port()}"
    one_line_error(meshver("status", "--admin", nobody), f"cannot use the Envoy admin at http://{nobody}")
    for steps in ("50,25", "0,100", "50,101"):
        one_line_error(meshver("rollout", "user", "--to", "2.1.0", "--steps", steps, "--admin", stack.admin),
                       "are not increasing percentages")
    one_line_error(meshver("rollout", "user", "--to", "2.1.0", "--admin", nobody), "cannot use the Envoy admin")
    one_line_error(meshver("rollout", "user", "--to", "2.0.3", "--admin", stack.admin),
                   "is the stable deployment")
    one_line_error(meshver("rollout", "user", "--to", "2.1.0", "--interval", "soon", "--admin", stack.admin),
                   "--interval")


# --- rollout -----------------------------------------------------------------------------

def test_healthy_rollout_reaches_100(stack):
    assert meshver("rollback", "user", "--admin", stack.admin).returncode == 0
    with load(stack) as background:
        result = meshver("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", "1s",
                         "--max-error-rate", "1%", "--max-p99", "2s", "--min-requests", "1",
                         "--admin", stack.admin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 1/2: user-2.1.0 at 50%: ok" in result.stdout
    assert "user 2.1.0 now takes 100% of user-v2" in result.stdout
    assert stack.line_weights() == (0, 100)
    assert set(background.statuses) == {200}
    assert set(stack.versions(20)) == {"2.1.0"}


def test_failing_rollout_rolls_back_within_one_interval(stack):
    assert meshver("rollback", "user", "--admin", stack.admin).returncode == 0
    stack.fault(stack.new, fail_rate=1)
    try:
        with load(stack):
            started = time.monotonic()
            result = meshver("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", "2s",
                             "--max-error-rate", "1%", "--admin", stack.admin)
            elapsed = time.monotonic() - started
    finally:
        stack.fault(stack.new, fail_rate=0)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rolled back user to 2.0.3: error rate 100.0% > 1.0% over the last 2s" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    # Within one interval: judged on the first step's window, never reaching the second. (Not a
    # wall-clock bound: on a loaded CI machine the CLI's start alone can take seconds.)
    assert "step 2/2" not in result.stdout
    assert elapsed < 2 + 60, f"rollback took {elapsed:.1f}s"
    assert stack.line_weights() == (100, 0)
    assert set(stack.versions(20)) == {"2.0.3"}


def test_slow_rollout_rolls_back_on_p99(stack):
    """The new deployment answers, but slowly: the latency gate catches it within one interval."""
    assert meshver("rollback", "user", "--admin", stack.admin).returncode == 0
    stack.fault(stack.new, delay_ms=300)
    try:
        with load(stack, threads=3):
            started = time.monotonic()
            result = meshver("rollout", "user", "--to", "2.1.0", "--steps", "50,100", "--interval", "2s",
                             "--max-error-rate", "1%", "--max-p99", "100ms", "--admin", stack.admin)
            elapsed = time.monotonic() - started
    finally:
        stack.fault(stack.new, delay_ms=0)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rolled back user to 2.0.3: p99" in result.stderr and "> 100ms" in result.stderr, result.stderr
    assert "step 2/2" not in result.stdout
    assert elapsed < 2 + 60, f"rollback took {elapsed:.1f}s"
    assert stack.line_weights() == (100, 0)


def wait_for_new_weight(stack, weight, proc):
    """Wait until the rollout `proc` has set the new deployment to `weight` in Envoy's runtime."""
    harness.wait_for(lambda: stack.line_weights()[1] == weight, 10,
                     f"the rollout setting {stack.new} to {weight}%", proc)


def test_ctrl_c_rolls_back_and_exits_130(stack):
    assert meshver("rollback", "user", "--admin", stack.admin).returncode == 0
    proc = subprocess.Popen([harness.meshver_cli(), "rollout", "user", "--to", "2.1.0", "--steps", "30,100",
                             "--interval", "30s", "--admin", stack.admin],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = harness.interrupt(proc, lambda: stack.line_weights()[1] == 30,
                                 f"the rollout setting {stack.new} to 30%", wait=10, timeout=10)
    assert proc.returncode == 130, out + err
    assert "interrupted at step 1/2" in err and "rolled back user to 2.0.3" in err
    assert stack.line_weights() == (100, 0)


def test_losing_the_admin_mid_rollout_says_what_was_left(tmp_path):
    """Envoy goes away during an interval: the rollout gives up after its retries, exits 1,
    and names the last weight it set (the state is left as it is: it cannot reach it)."""
    with Stack(tmp_path) as own:
        proc = subprocess.Popen([harness.meshver_cli(), "rollout", "user", "--to", "2.1.0", "--steps", "25,100",
                                 "--interval", "2s", "--admin", own.admin],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_new_weight(own, 25, proc)
            own.envoy.stop()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshver: lost the Envoy admin"), err
    assert "user-2.1.0 to 25%" in lines[0] and "left as they are" in lines[0], lines[0]
