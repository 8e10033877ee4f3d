"""Part 3 through the real Envoy: the mesh's weights (live, via the admin runtime), sticky
and monotonic canary assignment from the filter's client buckets.

Bounds on shares are binomial at 5 standard deviations (harness.binomial_bounds): a
correct build falls outside one a few times in a million runs, a broken split at once.
"""

import threading
import time

import pytest

import harness
from harness import http1


@pytest.fixture(scope="module")
def line(demo):
    """(old, new): route keys of the user 2.x line's deployments, oldest first (`check --json`)."""
    user = next(s for s in demo.compiled["services"] if s["name"] == "user")
    old, new = next(line for line in user["lines"] if line["major"] == 2)["deployments"]
    return old, new


def set_new_weight(demo, line, percent):
    """Give the newer 2.x deployment `percent` of the line, the older the rest (admin runtime)."""
    old, new = line
    demo.envoy.set_weights({new: percent, old: 100 - percent})


def version_for(demo, user=None):
    headers = {"x-api-version": "2"}
    if user is not None:
        headers["x-user-id"] = user
    answer = http1("POST", demo.url + "/login", headers)
    assert answer.status == 200, answer.body
    return answer.json["version"]


def test_unkeyed_split_follows_the_weights(demo, line):
    set_new_weight(demo, line, 10)
    versions = [version_for(demo) for _ in range(1000)]
    assert set(versions) == {"2.0.3", "2.1.0"}
    low, high = harness.binomial_bounds(len(versions), 0.10)
    assert low <= versions.count("2.1.0") <= high, (versions.count("2.1.0"), low, high)


def test_keyed_clients_stay_on_one_deployment(demo, line):
    set_new_weight(demo, line, 50)
    placements = {}
    for user in range(60):
        seen = {version_for(demo, f"user-{user}") for _ in range(8)}
        assert len(seen) == 1, (user, seen)
        placements[user] = seen.pop()
    # The buckets spread clients: at 50/50 both deployments get a fair share of 60 clients.
    on_new = sum(v == "2.1.0" for v in placements.values())
    low, high = harness.binomial_bounds(len(placements), 0.5)
    assert low <= on_new <= high, (on_new, low, high, placements)


def test_raising_the_new_weight_moves_clients_only_from_old_to_new(demo, line):
    clients = [f"customer-{i}" for i in range(200)]
    previous = set()
    for weight in (0, 5, 25, 50, 75, 100):
        set_new_weight(demo, line, weight)
        on_new = {c for c in clients if version_for(demo, c) == "2.1.0"}
        assert previous <= on_new, f"at {weight}% {sorted(previous - on_new)} went back to the old version"
        # Each step is near its weight (exactly none at 0%, exactly all at 100%).
        low, high = harness.binomial_bounds(len(clients), weight / 100)
        assert low <= len(on_new) <= high, (weight, len(on_new), low, high)
        previous = on_new
    assert previous == set(clients)


def test_a_runtime_shift_under_load_fails_no_request(demo, line):
    """Four clients keep sending while the line moves to the new deployment and back. Each
    phase lasts until enough requests have finished in it, not a fixed time."""
    set_new_weight(demo, line, 10)
    results, stop = [], threading.Event()  # (started, finished, status, version)

    def load():
        deadline = time.monotonic() + 60  # bounded even if the test fails
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = http1("POST", demo.url + "/login", {"x-api-version": "2"})
                results.append((started, time.monotonic(), answer.status,
                                answer.json and answer.json.get("version")))
            except OSError as error:
                results.append((started, time.monotonic(), repr(error), None))

    # Envoy hands new runtime values to its workers right after the admin answers; requests
    # that start this long after a shift must all see it.
    grace = 0.5

    def versions_between(after, before=float("inf")):
        """Versions of the requests that started after `after` and finished before `before`:
        all of them routed between the two."""
        return [v for started, finished, _, v in list(results) if after < started and finished < before]

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        # At 90/10, both deployments answer before the shift (1 in 10 of requests: P(none
        # of 300) < 1e-13).
        harness.wait_for(lambda: len(versions_between(0)) >= 300, 30, "300 requests before the shift")
        shifting_at = time.monotonic()
        set_new_weight(demo, line, 100)
        shifted_at = time.monotonic()
        harness.wait_for(lambda: len(versions_between(shifted_at + grace)) >= 100, 30,
                         "100 requests started after the shift")
        going_back_at = time.monotonic()
        set_new_weight(demo, line, 0)
        back_at = time.monotonic()
        harness.wait_for(lambda: len(versions_between(back_at + grace)) >= 100, 30,
                         "100 requests started after the shift back")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = [r for r in results if r[2] != 200]
    assert not failures, failures[:5]
    assert set(versions_between(0, shifting_at)) == {"2.0.3", "2.1.0"}
    assert set(versions_between(shifted_at + grace, going_back_at)) == {"2.1.0"}
    assert set(versions_between(back_at + grace)) == {"2.0.3"}
