"""Part 3 through the real Envoy: the mesh's weights (live, via the admin runtime), sticky
and monotonic canary assignment from the filter's client buckets."""

import threading
import time
import urllib.request

import harness
from harness import http1

NEW, OLD = "user-2.1.0", "user-2.0.3"


def set_weights(envoy, new, old):
    """Shift the user 2.x line through Envoy's admin runtime layer."""
    query = f"routing.user-v2.{NEW}={new}&routing.user-v2.{OLD}={old}"
    request = urllib.request.Request(f"{envoy.admin_url}/runtime_modify?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def version_for(demo, user=None):
    headers = {"x-api-version": "2"}
    if user is not None:
        headers["x-user-id"] = user
    answer = http1("POST", demo.url + "/login", headers)
    assert answer.status == 200, answer.body
    return answer.json["version"]


def test_unkeyed_split_follows_the_weights(demo):
    """At 90/10 over 1,000 requests, 2.1.0's share is 10% ± 4 points (about 4 standard deviations)."""
    set_weights(demo.envoy, 10, 90)
    versions = [version_for(demo) for _ in range(1000)]
    share = versions.count("2.1.0") / len(versions)
    assert set(versions) == {"2.0.3", "2.1.0"}
    assert 0.06 <= share <= 0.14, share


def test_keyed_clients_stay_on_one_deployment(demo):
    set_weights(demo.envoy, 50, 50)
    placements = {}
    for user in range(60):
        seen = {version_for(demo, f"user-{user}") for _ in range(8)}
        assert len(seen) == 1, (user, seen)
        placements[user] = seen.pop()
    # The buckets spread clients: at 50/50 both deployments get a fair share of 60 clients.
    on_new = sum(v == "2.1.0" for v in placements.values())
    assert 15 <= on_new <= 45, placements


def test_raising_the_new_weight_moves_clients_only_from_old_to_new(demo):
    clients = [f"customer-{i}" for i in range(200)]
    previous = set()
    for weight in (0, 5, 25, 50, 75, 100):
        set_weights(demo.envoy, weight, 100 - weight)
        on_new = {c for c in clients if version_for(demo, c) == "2.1.0"}
        assert previous <= on_new, f"at {weight}% {sorted(previous - on_new)} went back to the old version"
        # Each step is near its weight (200 clients: ±12 points is over 3 standard deviations).
        assert abs(len(on_new) / len(clients) - weight / 100) <= 0.12, (weight, len(on_new))
        previous = on_new
    assert previous == set(clients)


def test_a_runtime_shift_under_load_fails_no_request(demo):
    set_weights(demo.envoy, 10, 90)
    results, stop = [], threading.Event()

    def load():
        deadline = time.monotonic() + 20  # bounded even if the test fails
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answer = http1("POST", demo.url + "/login", {"x-api-version": "2"})
                results.append((time.monotonic(), answer.status, answer.json and answer.json.get("version")))
            except OSError as error:
                results.append((time.monotonic(), repr(error), None))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        set_weights(demo.envoy, 100, 0)
        shifted_at = time.monotonic()
        time.sleep(1.5)
        set_weights(demo.envoy, 0, 100)
        back_at = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = [r for r in results if r[1] != 200]
    assert not failures, failures[:5]
    assert len(results) > 200, len(results)
    # Requests that started after a shift went where the new weights say (0.2s of grace for in-flight ones).
    after_first = {v for t, _, v in results if shifted_at + 0.2 < t < back_at}
    after_second = {v for t, _, v in results if t > back_at + 0.2}
    assert after_first == {"2.1.0"}, after_first
    assert after_second == {"2.0.3"}, after_second
    assert {v for t, _, v in results if t < shifted_at} == {"2.0.3", "2.1.0"}


def test_every_generated_config_passes_envoy_validate(tmp_path):
    """The configs the harness generates (demo layout with sidecars) pass `envoy --mode validate`."""
    import json
    import subprocess

    catalog = json.loads(harness.DEMO_CATALOG.read_text())
    names = [f"{s['name']}-{d['version']}" for s in catalog["services"] for d in s["deployments"]]
    sidecar = {"name": "sc", "port": 3, "forward_to": 4, "catalog": {**catalog, "caller": {"service": "order", "version": "2.0.0"}}}
    config = harness.envoy_config(catalog, 1, 2, {n: 5 for n in names}, extra_listeners=[sidecar])
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    done = subprocess.run([harness.envoy_binary(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
