"""A real Prometheus (Debian's `prometheus` package) with the repository's rules
(prometheus/rules.yml), scraping a real Envoy that runs the filter: the labelled series, their
increase and rate, the recording rules' outputs and the alerts, all read through Prometheus' HTTP
API; and the rules checked and unit-tested with promtool."""

import json
import math
import subprocess
import time

import yaml
from prometheus_client.parser import text_string_to_metric_families

import harness
from harness import http1

RULES = harness.PROMETHEUS_RULES
RULE_TESTS = harness.ROOT / "prometheus/rules.test.yml"


def promtool(*args):
    return subprocess.run([harness.prometheus_binary("promtool"), *map(str, args)], cwd=harness.ROOT,
                          capture_output=True, text=True, timeout=60)


def rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout, checked.stdout


def test_the_rules_pass_their_unit_tests_and_every_alert_fires_in_one():
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout, tested.stdout
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    assert {case["alertname"] for case in cases if case["exp_alerts"]} == {r["alert"] for r in rules() if "alert" in r}


# --- Through Envoy ------------------------------------------------------------------------------

JSON = {"content-type": "application/json"}
# What the deployments do: user-2.1.0 fails every request (a canary gone bad, at weight 0 in its
# line, so reached only pinned), user-2.0.3 takes at least this long to answer.
SLOW_MS = 120
# Enough failures in a second for the error rate alert's floor (1 response/s over a minute).
FAILURES = 90

# Requests at the edge, as (path, headers, status, times in the first round, times in the second).
# The first round makes every series; the second adds to them all but the version conflict's.
EDGE = [
    ("/register", {}, 200, 1, 3),                          # no version: user 1, deprecated
    ("/v2/register", {}, 200, 1, 2),                       # user 2: all to user-2.0.3, slow
    ("/v2.1/register", {}, 503, 1, FAILURES),              # pinned to user-2.1.0, failing
    ("/register", {"x-api-version": "9"}, 400, 1, 1),      # unsupported version
    ("/register", {"x-api-version": "x"}, 400, 1, 2),      # malformed version
    ("/v1/register", {"x-api-version": "2"}, 400, 1, 0),   # version conflict
    ("/order", {}, 200, 1, 2),                             # order 1.2.0 calls user 1 through its sidecar
]
# What each edge request counts in meshver_requests_total{service="user",caller="none"}, by
# (version, outcome).
EDGE_SERIES = [("none", "forwarded"), ("2", "forwarded"), ("2", "forwarded"), ("other", "unsupported_version"),
               ("other", "malformed_version"), ("other", "version_conflict"), None]
USER_AT_THE_EDGE = 'meshver_requests_total{service="user",caller="none"}'


def send_round(stack, round_index):
    for path, headers, status, *times in EDGE:
        for _ in range(times[round_index]):
            answer = http1("POST", stack.url + path, headers)
            assert answer.status == status, (path, headers, answer.status, answer.body[:300])


def edge_counts(rounds):
    """{(version, outcome): count} of the edge's user requests after `rounds` (0, 1 or both)."""
    counts = {}
    for (*_, first, second), key in zip(EDGE, EDGE_SERIES):
        if key:
            counts[key] = counts.get(key, 0) + sum((first, second)[i] for i in rounds)
    return counts


def by_version_and_outcome(samples):
    return {(labels["version"], labels["outcome"]): value for labels, value in samples}


def meshver_series_in_envoy(envoy):
    """{(name, labels): value} of the meshver_ samples on Envoy's own /stats/prometheus."""
    text = http1("GET", envoy.admin_url + "/stats/prometheus").body.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("meshver_")}


def meshver_series_in_prometheus(prometheus):
    """The same, as Prometheus stored them (without the instance and job labels it adds)."""
    series = {}
    for labels, value in prometheus.query('{__name__=~"meshver_.+"}'):
        name = labels.pop("__name__")
        rest = {k: v for k, v in labels.items() if k not in ("instance", "job")}
        series[(name, tuple(sorted(rest.items())))] = value
    return series


def values(prometheus, expr, label):
    """{value of `label`: sample value} of an instant query."""
    return {labels[label]: value for labels, value in prometheus.query(expr)}


def test_prometheus_reads_the_labelled_series_and_evaluates_the_rules():
    """Two rounds of requests through the demo catalog's edge, order's sidecar and user's inbound
    side, with a failing and a slow deployment. Prometheus scrapes Envoy every second and holds
    exactly the series Envoy shows, with their labels; the second round's increase and rate by
    version and outcome are what was sent; the recording rules give each version's refused share,
    each deployment's error rate and p99; the deprecated-version alert fires per caller and the
    canary's error rate alert is active (pending its minute)."""
    catalog = json.loads(harness.DEMO_CATALOG.read_text())  # user 1 is deprecated since 2026-01-01
    with harness.DemoStack(catalog) as stack, \
            harness.Prometheus([f"127.0.0.1:{stack.envoy.admin_port}"]) as prometheus:
        for route, query in ((stack.route("user", "2.1.0"), "fail_rate=1"),
                             (stack.route("user", "2.0.3"), f"delay_ms={SLOW_MS}")):
            assert http1("POST", f"{stack.upstreams[route].url}/__fault?{query}").status == 200
        stack.envoy.set_weights({stack.route("user", "2.1.0"): 0, stack.route("user", "2.0.3"): 100})

        send_round(stack, 0)
        first = edge_counts([0])

        def first_round_stored():
            stored = by_version_and_outcome(prometheus.query(f"sum by (version, outcome) ({USER_AT_THE_EDGE})"))
            deprecated = values(prometheus, 'meshver_deprecated_requests_total{service="user",version="1"}', "caller")
            failed = values(prometheus, 'envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}',
                            "envoy_cluster_name")
            return stored == first and deprecated.keys() == {"none", "order"} and failed == {"user-2.1.0": 1}

        harness.wait_for(first_round_stored, 15, "the first round's series in Prometheus")
        assert values(prometheus, 'up{job="envoy"}', "instance") == {f"127.0.0.1:{stack.envoy.admin_port}": 1}
        before_second = time.time()

        send_round(stack, 1)
        both = edge_counts([0, 1])
        harness.wait_for(lambda: by_version_and_outcome(prometheus.query(
            f"sum by (version, outcome) ({USER_AT_THE_EDGE})")) == both, 15, "the second round's counts in Prometheus")

        # What reads a window of a minute first, while the second round is in it. A rate for
        # what the second round sent, none for the conflict only the first one sent.
        rising = prometheus.query(f"sum by (version, outcome) (rate({USER_AT_THE_EDGE}[1m])) > 0")
        assert by_version_and_outcome(rising).keys() == {key for key, n in edge_counts([1]).items() if n}

        def rules_evaluated():
            refused = values(prometheus, 'service_version:meshver_requests_refused:ratio_rate5m{service="user"}',
                             "version")
            errors = values(prometheus, "envoy_cluster_name:envoy_cluster_upstream_rq_5xx:ratio_rate1m",
                            "envoy_cluster_name")
            p99 = values(prometheus, "envoy_cluster_name:envoy_cluster_upstream_rq_time:p99_1m", "envoy_cluster_name")
            # The p99 is NaN until Envoy's histogram flush (every 5 s) has put the second round's
            # latencies into a scrape: the first round's came with the series, so they are no increase.
            ready = (refused.get("other") == 1 and refused.get("2") == 0 and errors.get("user-2.1.0") == 1
                     and errors.get("user-2.0.3") == 0 and not math.isnan(p99.get("user-2.0.3", math.nan)))
            return (refused, errors, p99) if ready else None

        refused, errors, p99 = harness.wait_for(rules_evaluated, 15, "the recording rules' outputs")
        # Every observation of the slow deployment took SLOW_MS or more.
        assert SLOW_MS < p99["user-2.0.3"] < float("inf"), p99

        def alerts(name):
            return [a for a in prometheus.alerts() if a["labels"]["alertname"] == name]

        # The canary's error rate is over the threshold and the floor: the alert waits its minute.
        canary = harness.wait_for(lambda: alerts("MeshverDeploymentErrorRateHigh"), 15, "the canary's error rate alert")
        assert [(a["labels"]["envoy_cluster_name"], a["state"]) for a in canary] in (
            [("user-2.1.0", "pending")], [("user-2.1.0", "firing")])

        def deprecated_use_alerted():
            found = [a for a in alerts("MeshverDeprecatedVersionCalled") if a["state"] == "firing"]
            return found if {a["labels"]["caller"] for a in found} == {"none", "order"} else None

        deprecated = harness.wait_for(deprecated_use_alerted, 15, "the deprecated-version alert firing per caller")
        for alert in deprecated:
            assert {k: alert["labels"][k] for k in ("service", "version", "severity")} == \
                {"service": "user", "version": "1", "severity": "info"}
            assert alert["annotations"]["summary"] == f"{alert['labels']['caller']} calls user API 1, which is deprecated"

        # Every series and value Envoy shows, labels included, and nothing else.
        harness.wait_for(lambda: meshver_series_in_prometheus(prometheus) == meshver_series_in_envoy(stack.envoy), 15,
                         "Prometheus holding the series Envoy shows")
        # The second round's increase, exactly: now less then.
        increase = prometheus.query(f"sum by (version, outcome) ({USER_AT_THE_EDGE})"
                                    f" - sum by (version, outcome) ({USER_AT_THE_EDGE} @ {before_second:.3f})")
        assert by_version_and_outcome(increase) == edge_counts([1])
        assert prometheus.exited() is None
