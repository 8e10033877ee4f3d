"""The shadow step (`meshver rollout --shadow`) through the real Envoy and real upstreams: Envoy
mirrors a share of a line's requests to the candidate's shadow cluster, only requests that every
deployment of the line can serve and by default only GET, HEAD and OPTIONS; a candidate that fails
in shadow is stopped before any user's request reaches it, and a healthy one goes on to its steps.

Each upstream counts what it received (GET /__requests): copies Envoy mirrored carry a Host with the
`-shadow` suffix, every other request is a user's."""

import json
import re
import subprocess

import pytest

import harness
from harness import meshver

# user: the 2.x line is rolled out from 2.0.3 (stable) to 2.1.0, which takes no real request yet.
# order: the candidate 2.0.4 is older than the stable 2.1.0, so a request for 2.1 is pinned to
# 2.1.0 and can never be mirrored to it.
CATALOG = {"services": [
    {"name": "user", "match": {"path_prefixes": ["/register", "/login"]}, "default_version": "2",
     "deployments": [{"version": "2.0.3", "weight": 100}, {"version": "2.1.0", "weight": 0}]},
    {"name": "order", "match": {"path_prefixes": ["/order"]}, "default_version": "2",
     "deployments": [{"version": "2.1.0", "weight": 100}, {"version": "2.0.4", "weight": 0}]},
]}
SAFE = {"GET", "HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with harness.DemoStack(CATALOG, envoy_name="shadow-envoy", mesh_fields={"shadow": True}) as s:
        s.catalog_path = tmp_path_factory.mktemp("shadow") / "catalog.json"
        s.catalog_path.write_text(json.dumps(CATALOG))
        yield s


def tally(stack, route):
    """What the upstream of `route` received: {"served": {method: n}, "mirrored": {method: n}}."""
    answer = harness.http1("GET", stack.upstreams[route].url + "/__requests")
    assert answer.status == 200, answer.body
    return answer.json


def shadow_keys(stack):
    return {k: v for k, v in stack.envoy.runtime().items() if k.startswith("shadow")}


def set_runtime(stack, values):
    answer = harness.http1("POST", f"{stack.envoy.admin_url}/runtime_modify?"
                                   + "&".join(f"{k}={v}" for k, v in values.items()))
    assert answer.status == 200, answer.body
    harness.wait_for(lambda: values.items() <= stack.envoy.runtime().items(), 5, f"runtime at {values}")


def send(stack, method, path, version, count):
    for _ in range(count):
        answer = harness.http1(method, stack.url + path, headers={"x-api-version": version},
                               body="{}" if method == "POST" else None)
        assert answer.status < 500, (method, path, version, answer.status, answer.body[:300])


def wait_mirrored(stack, route, expected):
    """Mirrored requests are fire-and-forget: wait until the upstream has counted them all."""
    return harness.wait_for(lambda: tally(stack, route)["mirrored"] == expected and tally(stack, route),
                            10, f"{route} to count mirrored {expected}")


def test_envoy_mirrors_only_requests_the_candidate_can_serve(stack):
    """The render's mirror policies, driven by their runtime keys directly: nothing is mirrored at
    the default 0%; at 100% every safe request of the line is copied once, unsafe ones only under
    their own key, and a request pinned to a version the candidate cannot serve never is."""
    candidate, stable = stack.route("order", "2.0.4"), stack.route("order", "2.1.0")
    before = tally(stack, candidate)
    send(stack, "GET", "/order", "2", 5)
    send(stack, "POST", "/order", "2", 5)
    assert tally(stack, candidate) == before == {"served": {}, "mirrored": {}}

    set_runtime(stack, {f"shadow.order-v2.{candidate}": 100})
    try:
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            send(stack, method, "/order", "2", 4)
        # 2.1 and 2.0.5 need 2.1.0: the filter pins them, off the line's route.
        send(stack, "GET", "/order", "2.1", 6)
        send(stack, "GET", "/order", "2.0.5", 6)
        wait_mirrored(stack, candidate, {"GET": 4, "HEAD": 4, "OPTIONS": 4})

        set_runtime(stack, {f"shadow_unsafe.order-v2.{candidate}": 100})
        send(stack, "POST", "/order", "2", 3)
        send(stack, "POST", "/order", "2.1", 3)
        counted = wait_mirrored(stack, candidate, {"GET": 4, "HEAD": 4, "OPTIONS": 4, "POST": 3})
    finally:
        set_runtime(stack, {f"shadow.order-v2.{candidate}": 0, f"shadow_unsafe.order-v2.{candidate}": 0})
    # Every user's request went to the stable deployment; the candidate answered nobody.
    assert counted["served"] == {}
    assert tally(stack, stable)["served"]["GET"] == 5 + 4 + 6 + 6
    # Envoy counts the copies on the candidate's shadow cluster, not on its own.
    stats = stack.envoy.stats()
    assert stats[f"cluster.{candidate}-shadow.upstream_rq_completed"] == 4 * 3 + 3
    assert stats[f"cluster.{candidate}.upstream_rq_total"] == 0


def load(stack):
    """User requests to the user 2.x line while a rollout runs, GET /login and POST /register, for
    `with`; their statuses kept."""
    def sender(method, path):
        return lambda: harness.http1(method, stack.url + path, headers={"x-api-version": "2"},
                                     body="{}" if method == "POST" else None, timeout=5).status
    return harness.Load([sender("GET", "/login"), sender("POST", "/register")])


def user_weights(stack):
    weights = stack.envoy.weights()
    return weights[stack.route("user", "2.0.3")], weights[stack.route("user", "2.1.0")]


def fault(stack, route, fail_rate):
    assert harness.http1("POST", f"{stack.upstreams[route].url}/__fault?fail_rate={fail_rate}").status == 200


def rollout(stack, *flags):
    return meshver("rollout", "user", "--to", "2.1.0", "--admin", stack.envoy.admin_url,
                   "--catalog", stack.catalog_path, *flags, timeout=120)


def test_a_candidate_that_fails_in_shadow_never_gets_a_users_request(stack):
    candidate = stack.route("user", "2.1.0")
    fault(stack, candidate, 1)
    try:
        with load(stack) as users:
            result = rollout(stack, "--shadow", "50%", "--steps", "10,100", "--interval", "2s",
                             "--min-requests", "1")
    finally:
        fault(stack, candidate, 0)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meshver: stopped the rollout of user 2.1.0 in shadow: error rate 100.0% > 1.0%"), lines[0]
    assert "no user's request" in lines[0] and "weights are unchanged" in lines[0]
    assert "step 1/2" not in result.stdout
    counted = tally(stack, candidate)
    assert counted["served"] == {}, counted
    assert counted["mirrored"].get("GET", 0) >= 1 and set(counted["mirrored"]) <= SAFE, counted
    # Users never saw the failing candidate, the weights are as they were, and mirroring is off.
    assert set(users.statuses) == {200, 404}, set(users.statuses)  # GET /login is not an endpoint: 404
    assert user_weights(stack) == (100, 0)
    assert set(shadow_keys(stack).values()) == {0}, shadow_keys(stack)


def test_a_healthy_candidate_passes_shadow_then_takes_its_steps(stack):
    candidate = stack.route("user", "2.1.0")
    before = tally(stack, candidate)
    with load(stack):
        result = rollout(stack, "--shadow", "50%", "--steps", "100", "--interval", "1s", "--min-requests", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    shadow_line = next(line for line in result.stdout.splitlines() if line.startswith("shadow: "))
    assert shadow_line.startswith(f"shadow: {candidate} mirrors 50% of user-v2's GET, HEAD and OPTIONS requests: ok, ")
    assert result.stdout.index("shadow: ") < result.stdout.index("step 1/1: ")
    assert "user 2.1.0 now takes 100% of user-v2" in result.stdout
    assert user_weights(stack) == (0, 100)
    assert tally(stack, candidate)["mirrored"]["GET"] > before["mirrored"].get("GET", 0)
    assert set(shadow_keys(stack).values()) == {0}
    assert meshver("rollback", "user", "--admin", stack.envoy.admin_url).returncode == 0


def test_rollback_ends_any_mirroring(stack):
    """A shadow step cut short (a lost admin) may leave mirroring on: rollback turns it off."""
    candidate = stack.route("user", "2.1.0")
    set_runtime(stack, {f"shadow.user-v2.{candidate}": 30, f"shadow_unsafe.user-v2.{candidate}": 30})
    done = meshver("rollback", "user", "--admin", stack.envoy.admin_url)
    assert done.returncode == 0, done.stderr
    assert shadow_keys(stack) == {f"shadow.user-v2.{candidate}": 0, f"shadow_unsafe.user-v2.{candidate}": 0,
                                  **{k: 0 for k in shadow_keys(stack) if "order" in k}}
    assert user_weights(stack) == (100, 0)


def test_ctrl_c_in_shadow_turns_mirroring_off_and_exits_130(stack):
    candidate = stack.route("user", "2.1.0")
    key = f"shadow.user-v2.{candidate}"
    proc = subprocess.Popen([harness.meshver_cli(), "rollout", "user", "--to", "2.1.0", "--shadow", "25",
                             "--interval", "30s", "--admin", stack.envoy.admin_url, "--catalog", stack.catalog_path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = harness.interrupt(proc, lambda: shadow_keys(stack).get(key) == 25, "the shadow step mirroring",
                                 wait=10, timeout=15)
    assert proc.returncode == 130, out + err
    assert "interrupted in the shadow step of user 2.1.0" in err and "mirroring is off" in err, err
    assert shadow_keys(stack)[key] == 0 and user_weights(stack) == (100, 0)


def test_dry_run_shows_the_shadow_step(stack):
    result = rollout(stack, "--shadow", "10%", "--steps", "50,100", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    shadow = lines.index("shadow first: 10% of user-v2's GET, HEAD and OPTIONS requests mirrored to user-2.1.0-shadow "
                         "for 30s, judged as a step by")
    assert "cluster.user-2.1.0-shadow.upstream_rq_completed" in lines[shadow + 1], lines
    assert shadow < next(i for i, line in enumerate(lines) if line.startswith("step 1/2: "))
    assert set(shadow_keys(stack).values()) <= {0} and user_weights(stack) == (100, 0)


def test_shadow_refusals(stack):
    """No shadow for a candidate that already takes real requests, and none of 0%."""
    admin = stack.envoy.admin_url
    assert meshver("shift", "user", "--to", "2.1.0", "--weight", "10", "--admin", admin).returncode == 0
    try:
        result = rollout(stack, "--shadow", "10%")
        assert result.returncode == 1 and "already takes 10% of user-v2" in result.stderr, result.stderr
    finally:
        assert meshver("rollback", "user", "--admin", admin).returncode == 0
    result = rollout(stack, "--shadow", "0")
    assert result.returncode == 1 and "mirrors nothing" in result.stderr, result.stderr
    result = rollout(stack, "--shadow-all-methods")
    assert result.returncode == 2 and "--shadow" in result.stderr, result.stderr
    assert user_weights(stack) == (100, 0)


def test_an_envoy_without_mirror_policies_is_refused(tmp_path):
    """A bootstrap rendered before shadow steps (no shadow cluster) would mirror nothing and pass
    every shadow step unjudged: refused."""
    config = harness.envoy_config(CATALOG, harness.free_port(), harness.free_port(),
                                  {route: harness.free_port() for route in harness.deployment_routes(CATALOG)})
    static = config["static_resources"]
    static["clusters"] = [c for c in static["clusters"] if not c["name"].endswith("-shadow")]
    for route in static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"][0]["routes"]:
        route.get("route", {}).pop("request_mirror_policies", None)
    with harness.Envoy(config, name="old-envoy") as envoy:
        result = meshver("rollout", "user", "--to", "2.1.0", "--shadow", "10", "--admin", envoy.admin_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "knows no shadow cluster user-2.1.0-shadow" in result.stderr, result.stderr


def test_a_fleet_stops_a_candidate_failing_in_shadow_before_any_users_request(tmp_path):
    """Three Envoys sharing one runtime folder, judged by a real Prometheus scraping all three: the
    mirror keys go through the folder like the weights, every Envoy mirrors, and the fleet-wide
    error rate of the copies stops the rollout before the candidate takes a user's request."""
    catalog = {"services": [CATALOG["services"][0]]}
    user = harness.compiled_catalog(catalog)["services"][0]
    stable, candidate = (d["route"] for d in user["deployments"])
    upstreams = {stable: harness.Upstream("user", "2.0.3"), candidate: harness.Upstream("user", "2.1.0")}
    fleet = prometheus = None
    try:
        runtime_dir = tmp_path / "runtime"
        fleet = harness.Fleet(catalog, upstreams, runtime_dir, mesh_fields={"shadow": True})
        prometheus = harness.Prometheus([f"127.0.0.1:{e.admin_port}" for e in fleet.envoys], rule_files=(),
                                        name="shadow-prometheus")
        harness.wait_for(lambda: [v for _, v in prometheus.query("up")] == [1.0] * 3, 30, "Prometheus scraping the fleet")
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        fault_upstream = harness.http1("POST", f"{upstreams[candidate].url}/__fault?fail_rate=1")
        assert fault_upstream.status == 200

        def sender(envoy):
            return lambda: harness.http1("GET", envoy.url + "/login", headers={"x-api-version": "2"}, timeout=5).status

        with harness.Load([sender(envoy) for envoy in fleet.envoys]) as load:
            result = meshver("rollout", "user", "--to", "2.1.0", "--shadow", "50%", "--steps", "50,100",
                             "--interval", "3s", "--runtime-dir", runtime_dir, "--catalog", tmp_path / "catalog.json",
                             "--prometheus", prometheus.url, *fleet.admin_flags(), timeout=120)
        assert result.returncode == 1, result.stdout + result.stderr
        # Prometheus reads the request and 5xx series at slightly different moments: 99.9% happens.
        stopped = re.match(r"meshver: stopped the rollout of user 2\.1\.0 in shadow: error rate (\d+\.\d)% > 1\.0%",
                           result.stderr)
        assert stopped and float(stopped[1]) >= 99, result.stderr
        counted = harness.http1("GET", upstreams[candidate].url + "/__requests").json
        assert counted["served"] == {} and counted["mirrored"].get("GET", 0) >= 20, counted
        # No user saw the failing candidate: the stable 2.0.3 answers GET /login 404 (not its endpoint).
        assert 404 in load.statuses and not [s for s in load.statuses if s is not None and s >= 500]
        for envoy in fleet.envoys:
            assert envoy.weights()[candidate] == 0, envoy.name
            shadow = {k: v for k, v in envoy.runtime().items() if k.startswith("shadow")}
            assert set(shadow.values()) == {0}, (envoy.name, shadow)
    finally:
        for part in (prometheus, fleet, *upstreams.values()):
            if part:
                part.stop()
