"""What the proxy does when a filter's VM fails, under each failure policy meshver renders (the
mesh file's `failure_policy`; docs/operators-guide.md, "When the filter's VM fails").

meshver's own code has no panics in its data path, so these tests make a VM fail with a fixture
module, tests/fixtures/trap-filter: it traps on a request that carries `x-trap` (as a bug would:
a panic, memory exhausted) and otherwise stamps `x-trap-filter: ran`, which the upstream echoes.
It is a copy of the wasm filter `meshver render envoy` wrote, failure policy included, with only
the module changed; it stands either in front of meshver (to show what becomes of the failed
filter while meshver goes on deciding) or in meshver's own place (to show what an operator gets
when meshver itself is the filter that failed). One worker, so one VM serves every request.
"""

import copy
import json
import subprocess

import pytest

import harness
from test_cli_render import validate_manifests

ROOT = harness.ROOT
TRAP_WASM = ROOT / "target/wasm32-wasip1/release/meshver_test_trap_filter.wasm"
# The trap's own [critical][wasm] line (the SDK's panic hook), which these tests cause on purpose.
TRAP_LOG = "panicked at tests/fixtures/trap-filter/"
CATALOG = {"services": [{
    "name": "user", "match": {"path_prefixes": ["/login"]}, "default_version": "2",
    "deployments": [{"version": "1.4.0"}, {"version": "2.1.0"}],
}]}
POLICIES = {None: "FAIL_CLOSED", "closed": "FAIL_CLOSED", "open": "FAIL_OPEN", "reload": "FAIL_RELOAD"}


@pytest.fixture(scope="module")
def trap_wasm():
    subprocess.run(["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "-p",
                    "meshver-test-trap-filter"], cwd=ROOT, check=True, timeout=600)
    return TRAP_WASM


@pytest.fixture(scope="module")
def upstreams():
    with harness.Upstream("user", "1.4.0") as v1, harness.Upstream("user", "2.1.0") as v2:
        yield {"user-1.4.0": v1.port, "user-2.1.0": v2.port}


def rendered(upstreams, policy, catalog=CATALOG):
    """`meshver render envoy` of one listener on `catalog`, with the mesh file's failure_policy."""
    listeners = [{"name": "edge", "port": harness.free_port(), "catalog": catalog}]
    return harness.render_envoy(harness.free_port(), listeners, upstreams, failure_policy=policy)


def http_filters(config):
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def wasm_filters(config):
    """Every wasm filter entry of every listener, the body filter's (the filter its matcher's
    action creates) included."""
    found = []
    for listener in config["static_resources"]["listeners"]:
        for entry in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            for matcher in entry["typed_config"].get("xds_matcher", {}).get("matcher_list", {}).get("matchers", []):
                entry = matcher["on_match"]["action"]["typed_config"]["typed_config"]
            if "config" in entry["typed_config"]:
                found.append(entry)
    return found


def wasm_configs(config):
    """The PluginConfig of every wasm filter of every listener."""
    return [entry["typed_config"]["config"] for entry in wasm_filters(config)]


def make_trap(entry, trap_wasm):
    """A rendered wasm filter entry, turned into the trap module (its failure policy kept)."""
    plugin = entry["typed_config"]["config"]
    plugin.update(name="trap", root_id="trap")
    plugin["vm_config"].update(vm_id="trap", code={"local": {"filename": str(trap_wasm)}})
    return entry


def trapping_envoy(upstreams, trap_wasm, policy, place):
    """Envoy on the rendered config, with the trap module beside meshver ("front"), in its place
    ("meshver"), or in the body filter's place ("body", on a catalog with body work), run under
    the filter config meshver rendered."""
    config = rendered(upstreams, policy, BODY_CATALOG if place == "body" else CATALOG)
    filters = http_filters(config)
    assert {plugin["failure_policy"] for plugin in wasm_configs(config)} == {POLICIES[policy]}
    if place == "front":
        filters.insert(0, make_trap(copy.deepcopy(filters[0]), trap_wasm))
    else:
        make_trap(wasm_filters(config)[0 if place == "meshver" else 1], trap_wasm)
    return harness.Envoy(config, concurrency=1, name=f"{policy}-{place}", expected_critical=TRAP_LOG)


def login(envoy, **headers):
    return harness.http1("POST", envoy.url + "/login", headers={k.replace("_", "-"): v for k, v in headers.items()})


def served(answer):
    """(version of the deployment that answered, whether the trap filter ran), or None when no
    upstream answered."""
    if answer.status != 200 or not isinstance(answer.json, dict) or "version" not in answer.json:
        return None
    return answer.json["version"], answer.json["headers"].get("x-trap-filter") == "ran"


def upstream_requests(envoy):
    stats = envoy.stats()
    return sum(stats.get(f"cluster.{route}.upstream_rq_total", 0) for route in ("user-1.4.0", "user-2.1.0"))


def failed_by_envoy(answer):
    """Envoy's own answer for a failed VM: 503, no body (not meshver's problem+json)."""
    return answer.status == 503 and answer.body == b"" and answer.header("server") == "envoy"


def trap(envoy):
    answer = login(envoy, x_trap="1")
    # The request the VM failed on is answered 503 by Envoy under every policy.
    assert failed_by_envoy(answer), answer
    harness.wait_for(lambda: envoy.critical_lines("wasm"), 5, f"{envoy.name} logged the trap")


# --- what is rendered ---------------------------------------------------------------------------

BODY_CATALOG = {"services": [{**CATALOG["services"][0], "data": {"contracts": [
    {"version": "2", "path_prefix": "/login", "schema": {"type": "object"}}]}}]}


@pytest.mark.parametrize("policy", POLICIES)
def test_every_rendered_wasm_filter_carries_the_failure_policy(upstreams, policy):
    """Fail-closed unless the mesh file says otherwise, always written out (left out, it would be
    whatever the Envoy release defaults to), on the body filter as on the header filter."""
    plugins = wasm_configs(rendered(upstreams, policy, BODY_CATALOG))
    assert [p["root_id"] for p in plugins] == ["meshver", "meshver-body"]
    assert {p["failure_policy"] for p in plugins} == {POLICIES[policy]}


def test_an_unknown_failure_policy_is_refused(tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    mesh = {"admin": "127.0.0.1:9901", "wasm": str(harness.WASM), "failure_policy": "FAIL_OPEN",
            "endpoints": {"user-1.4.0": "127.0.0.1:1", "user-2.1.0": "127.0.0.1:2"},
            "listeners": [{"name": "edge", "address": "127.0.0.1:3", "catalog": str(catalog)}]}
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    done = harness.meshver("render", "envoy", tmp_path / "mesh.json")
    assert done.returncode != 0 and done.stdout == ""
    assert "unknown variant `FAIL_OPEN`, expected one of `closed`, `open`, `reload`" in done.stderr, done.stderr


@pytest.mark.parametrize("policy, strategy", [(None, "FAIL_CLOSE"), ("closed", "FAIL_CLOSE"),
                                              ("open", "FAIL_OPEN"), ("reload", "FAIL_RELOAD")])
def test_istio_plugins_carry_the_failure_policy(tmp_path, policy, strategy):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(BODY_CATALOG))
    flags = ["--failure-policy", policy] if policy else []
    done = harness.meshver("render", "istio", catalog, *flags)
    assert done.returncode == 0, done.stderr
    plugins = [d["spec"] for d in validate_manifests(done.stdout) if d["kind"] == "WasmPlugin"]
    # A header and a body plugin for each deployment's workloads.
    assert [p["pluginName"] for p in plugins] == ["meshver", "meshver-body"] * 2
    assert {p["failStrategy"] for p in plugins} == {strategy}


# --- a VM that fails while serving --------------------------------------------------------------

def test_fail_closed_answers_503_from_then_on(upstreams, trap_wasm):
    """The default. Once meshver's VM has failed, every request on it is answered 503 by Envoy
    (no body) and none reaches an upstream, whatever it asks for: none escapes version policy."""
    envoy = trapping_envoy(upstreams, trap_wasm, None, "meshver")
    trap(envoy)
    before = upstream_requests(envoy)
    for headers in ({}, {"x_api_version": "1"}, {"x_meshver_route": "user-1.4.0"}):
        answer = login(envoy, **headers)
        assert failed_by_envoy(answer), (headers, answer)
    assert harness.http2("POST", envoy.url + "/login").status == 503
    assert upstream_requests(envoy) == before


def test_fail_open_skips_the_failed_filter(upstreams, trap_wasm):
    """Once a filter's VM has failed, Envoy leaves that filter out: requests go on through the
    rest of the chain. Here meshver, after the failed filter, goes on deciding."""
    envoy = trapping_envoy(upstreams, trap_wasm, "open", "front")
    assert served(login(envoy, x_api_version="1")) == ("1.4.0", True)
    trap(envoy)
    assert served(login(envoy, x_api_version="1")) == ("1.4.0", False)
    assert served(login(envoy, x_api_version="2", x_trap="1")) == ("2.1.0", False)
    refused = login(envoy, x_api_version="3")
    assert refused.status == 400 and refused.json["type"] == "urn:meshver:problem:unsupported-version"


FORGED_ROUTING = {"x_meshver_route": "user-1.4.0", "x_meshver_sticky": "0001", "x_meshver_body": "user s0.m1.c- 1"}


def test_fail_open_when_meshver_is_the_failed_filter(upstreams, trap_wasm):
    """What fail-open means when meshver's own VM fails: requests reach Envoy's routes with no
    route key, so the rendered routes answer their 404 and no upstream is reached. A client that
    sends the route header (or the sticky number, or the body mark) itself gets the same: Envoy
    removes them as the request arrives, before any filter and before routing, so no client
    picks a deployment whatever becomes of the filter."""
    envoy = trapping_envoy(upstreams, trap_wasm, "open", "meshver")
    trap(envoy)
    before = upstream_requests(envoy)
    for headers in ({"x_api_version": "2"}, {"x_api_version": "2", **FORGED_ROUTING}, FORGED_ROUTING):
        for answer in (login(envoy, **headers),
                       harness.http2("POST", envoy.url + "/login", {k.replace("_", "-"): v for k, v in headers.items()})):
            assert answer.status == 404 and answer.json["title"] == "no service matched", (headers, answer)
    assert upstream_requests(envoy) == before


def test_a_sidecar_failed_open_passes_on_no_claim_of_the_client(upstreams, trap_wasm):
    """A sidecar listener forwards every request; with its meshver failed open it forwards them
    unchecked, but without the caller claim, requirement or route key a client in its pod wrote
    itself: the callee's inbound listener, which trusts the claims sidecars stamp, gets none it
    did not make."""
    inbound = harness.free_port()
    listeners = [{"name": "sidecar", "port": harness.free_port(), "catalog": {
        **CATALOG, "caller": {"service": "order", "version": "2.0.0"}}, "forward_to": inbound}]
    config = harness.render_envoy(harness.free_port(), listeners, upstreams, failure_policy="open")
    make_trap(http_filters(config)[0], trap_wasm)
    with harness.Upstream("user", "2.1.0", port=inbound):
        envoy = harness.Envoy(config, concurrency=1, name="open-sidecar", expected_critical=TRAP_LOG)
        trap(envoy)
        forged = {"x-meshver-caller": "user/9.0.0", "x-meshver-requires": ">=0", "x-meshver-route": "user-1.4.0",
                  "x-api-version": "1"}
        answer = harness.http1("POST", envoy.url + "/login", headers=forged)
        assert answer.status == 200 and answer.json["version"] == "2.1.0", answer
        assert answer.json["headers"]["x-api-version"] == "1"
        assert not [name for name in answer.json["headers"] if name.startswith("x-meshver-")], answer.json


def test_a_body_filter_failed_open_is_left_out_of_marked_requests(upstreams, trap_wasm):
    """The body filter is created only for a request the header filter marked (no other ever
    enters its VM); failed open, it is left out of those too: they reach their deployment as
    decided, with no body work done on them (the operator's guide says what that means)."""
    envoy = trapping_envoy(upstreams, trap_wasm, "open", "body")
    # Version 1 has no contract: no mark, no body filter.
    assert served(login(envoy, x_api_version="1")) == ("1.4.0", False)
    assert served(login(envoy, x_api_version="2")) == ("2.1.0", True)
    trap(envoy)
    assert served(login(envoy, x_api_version="2")) == ("2.1.0", False)
    assert served(login(envoy, x_api_version="1")) == ("1.4.0", False)


def test_fail_reload_fails_closed_until_the_vm_is_back(upstreams, trap_wasm):
    """Envoy reloads a failed VM (backing off from 1 s) on a later request; until then requests
    are answered 503, as under fail-closed; then the filter runs again."""
    envoy = trapping_envoy(upstreams, trap_wasm, "reload", "front")
    trap(envoy)
    while_down = []

    def back():
        answer = login(envoy, x_api_version="1")
        if served(answer) == ("1.4.0", True):
            return True
        while_down.append(answer)
        return False

    harness.wait_for(back, 20, "the trap filter reloaded and serving", interval=0.2)
    assert all(failed_by_envoy(answer) for answer in while_down), while_down
    assert envoy.stats()["wasm.trap.vm_reload_success"] >= 1
    assert served(login(envoy, x_api_version="2")) == ("2.1.0", True)


# --- a VM that cannot start -----------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["closed", "open", "reload"])
def test_a_vm_that_cannot_start_is_refused_under_every_policy(upstreams, tmp_path, policy):
    """The policies are about a VM that fails while serving. A catalog the filter refuses in
    on_configure (here one with no service) is refused whatever the policy: Envoy does not
    start on it, and says why, meshver's own message included."""
    config = rendered(upstreams, policy)
    http_filters(config)[0]["typed_config"]["config"]["configuration"]["value"] = '{"services":[]}'
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    done = subprocess.run([str(harness.envoy_binary()), "-c", str(path), "--base-id", str(harness.next_base_id()),
                           "--concurrency", "1", "--disable-hot-restart", "--log-level", "info"],
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    assert "meshver: failed to load plugin config: $.services" in output, output[-2000:]
    assert "Unable to create Wasm plugin meshver" in output, output[-2000:]
