"""`meshver check` and `meshver render`: the shipped configs are what render produces, Envoy
accepts them, and the Istio manifests are valid against Istio's own CRD schemas."""

import hashlib
import json
import re
import subprocess

import pytest

import harness
from harness import meshver

ROOT = harness.ROOT
# Istio's own CRDs of the kinds we render, kept in the repository (README.md beside it).
CRDS = ROOT / "tests/specs/istio/customresourcedefinitions.gen.yaml"
DEMO_MESH = ROOT / "envoy/demo.mesh.json"
DEMO_ENVOY = ROOT / "envoy/demo.json"
DEMO_ISTIO = ROOT / "envoy/istio/demo.yaml"
# How the shipped files are made (cwd = the repository root); the drift tests re-run these.
RENDER_DEMO_ENVOY = ["render", "envoy", "envoy/demo.mesh.json", "--wasm-relative-to", "."]
RENDER_DEMO_ISTIO = ["render", "istio", "examples/catalog.json"]
# Every shipped Istio manifest and the command that makes it (demo-served: body work).
SHIPPED_ISTIO = {DEMO_ISTIO: RENDER_DEMO_ISTIO,
                 ROOT / "envoy/istio/demo-served.yaml": ["render", "istio", "examples/catalog-served.json"]}
# The catalog that docs/reference.md shows as "A full example" (every field, a data section).
REFERENCE = ROOT / "docs/reference.md"


def shipped_envoy_configs():
    """The Envoy configs the repository ships (envoy/*.json, not the mesh files they come from)."""
    return sorted(p for p in (ROOT / "envoy").glob("*.json") if not p.name.endswith(".mesh.json"))


def harness_config(tmp_path):
    """What the e2e harness renders: the demo catalog on an edge listener, and an outbound
    sidecar that knows its caller and forwards."""
    catalog = json.loads(harness.DEMO_CATALOG.read_text())
    sidecar = {"name": "sidecar", "port": harness.free_port(), "forward_to": harness.free_port(),
               "catalog": {**catalog, "caller": {"service": "order", "version": "2.0.0"}}}
    endpoints = {route: harness.free_port() for route in harness.deployment_routes(catalog)}
    config = harness.envoy_config(catalog, harness.free_port(), harness.free_port(), endpoints,
                                  extra_listeners=[sidecar])
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    return path


# name -> (tmp_path -> path of an Envoy config); Envoy must accept every one.
ENVOY_CONFIGS = {**{str(p.relative_to(ROOT)): (lambda _, p=p: p) for p in shipped_envoy_configs()},
                 "rendered by the harness": harness_config}


# --- check ---------------------------------------------------------------------------

def test_check_accepts_the_demo_catalog():
    result = meshver("check", "examples/catalog.json")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"examples/catalog.json: ok, \d+ services, \d+ deployments\n", result.stdout)


def test_check_prints_every_error_with_its_path(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"route_header": "x-bad", "services": [
        {"name": "User", "match": {"path_prefixes": ["/u"]}, "default_version": "1",
         "deployments": [{"version": "1.0.0", "weight": 150}]}]}))
    result = meshver("check", bad)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) >= 3, result.stderr
    for line in lines:
        assert line.startswith(f"{bad}: $."), line
    assert any("$.route_header" in line for line in lines)
    assert any("$.services[0].name" in line for line in lines)
    assert any("$.services[0].deployments[0].weight" in line for line in lines)
    assert "panicked" not in result.stderr and result.stdout == ""


def test_check_names_unreadable_files_in_one_line(tmp_path):
    result = meshver("check", tmp_path / "missing.json")
    assert result.returncode == 1
    assert re.fullmatch(r"meshver: cannot read catalog .*missing.json: .*; .*\n", result.stderr)
    syntax = tmp_path / "syntax.json"
    syntax.write_text('{"services": [')
    result = meshver("check", syntax)
    assert result.returncode == 1 and result.stderr.startswith(f"{syntax}: $")


def full_example():
    """The JSON block under "## A full example" in docs/reference.md, as text."""
    section = REFERENCE.read_text().split("\n## A full example\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)\n```", section, re.S)
    assert len(blocks) == 1, "the full example is one json block"
    return blocks[0]


def test_check_accepts_the_full_example_of_the_reference(tmp_path):
    example = tmp_path / "full-example.json"
    example.write_text(full_example())
    catalog = json.loads(example.read_text())
    assert any("data" in service for service in catalog["services"])
    result = meshver("check", example)
    # Exit 0 also means no data compatibility finding: its 2.1 only widens what 2 accepted.
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{example}: ok, 2 services, 4 deployments\n" and result.stderr == ""


# --- render envoy ----------------------------------------------------------------------

def test_shipped_envoy_config_is_what_render_produces():
    """Each shipped envoy/<name>.json is what its envoy/<name>.mesh.json renders (the demo's
    two Envoys: demo.json, and demo-served.json for user 1 served by 2.x)."""
    shipped = shipped_envoy_configs()
    assert {DEMO_ENVOY, ROOT / "envoy/demo-served.json"} <= set(shipped), shipped
    for config in shipped:
        name = config.relative_to(ROOT)
        render = ["render", "envoy", str(name.with_suffix(".mesh.json")), "--wasm-relative-to", "."]
        result = meshver(*render)
        assert result.returncode == 0, result.stderr
        assert config.read_text() == result.stdout, (
            f"{name} is stale: run `target/release/meshver {' '.join(render)} -o {name}` "
            "from the repository root")


@pytest.mark.parametrize("name", ENVOY_CONFIGS)
def test_envoy_accepts(name, tmp_path):
    """`envoy --mode validate` on every config we ship or generate (cwd: the repository root,
    where the shipped ones name the module from)."""
    path = ENVOY_CONFIGS[name](tmp_path)
    result = subprocess.run([str(harness.envoy_binary()), "--mode", "validate", "-c", str(path),
                             "--disable-hot-restart", "--log-level", "warn"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
    assert "OK" in result.stdout


def test_rendered_routes_follow_the_catalog():
    config = json.loads(meshver(*RENDER_DEMO_ENVOY).stdout)
    catalog = json.loads(harness.DEMO_CATALOG.read_text())
    compiled = harness.compiled_catalog(catalog)
    listeners = config["static_resources"]["listeners"]
    assert [l["name"] for l in listeners] == ["edge", "inbound", "order-1.2.0-sidecar", "order-2.0.0-sidecar"]
    hcm = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["codec_type"] == "AUTO" and hcm["stat_prefix"] == "edge"
    wasm, router = hcm["http_filters"]
    assert wasm["name"] == "envoy.filters.http.wasm" and router["name"] == "envoy.filters.http.router"
    assert json.loads(wasm["typed_config"]["config"]["configuration"]["value"]) == catalog
    assert wasm["typed_config"]["config"]["vm_config"]["vm_id"] == "meshver-edge"
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    by_key = {r["match"]["headers"][0]["string_match"]["exact"]: r["route"]
              for r in routes if "headers" in r["match"]}
    assert by_key["user-2.1.0"]["cluster"] == "user-2.1.0"
    line = by_key["user-v2"]["weighted_clusters"]
    assert line["runtime_key_prefix"] == "routing.user-v2"
    assert line["header_name"] == "x-meshver-sticky"
    # Newest first, weights from the catalog.
    assert [(c["name"], c["weight"]) for c in line["clusters"]] == [("user-2.1.0", 10), ("user-2.0.3", 90)]
    # Every line as `check --json` compiles it: its route, its deployments newest first, their weights.
    for compiled_line in (line for service in compiled["services"] for line in service["lines"]):
        rendered = by_key[compiled_line["route"]]["weighted_clusters"]["clusters"]
        assert [(c["name"], c["weight"]) for c in rendered] == list(reversed(compiled_line["weights"].items()))
    assert routes[-1]["direct_response"]["status"] == 404
    # The deprecated 1.4.0 announces itself on its pinned route and in its line; others do not.
    lifecycle = [{"header": {"key": "deprecation", "value": "@1767225600"},
                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                 {"header": {"key": "sunset", "value": "Wed, 30 Jun 2027 00:00:00 GMT"},
                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                 {"header": {"key": "link", "value": '<https://api.example.com/docs/user/v2>; rel="successor-version"'},
                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    pinned = {r["route"]["cluster"]: r for r in routes if "cluster" in r.get("route", {})}
    assert pinned["user-1.4.0"]["response_headers_to_add"] == lifecycle
    assert by_key["user-v1"]["weighted_clusters"]["clusters"][0]["response_headers_to_add"] == lifecycle
    assert "response_headers_to_add" not in pinned["user-2.1.0"]
    assert all("response_headers_to_add" not in c for c in line["clusters"])
    # Pinned routes, then lines, then the 404.
    kinds = ["pinned" if "cluster" in r.get("route", {}) else "line" if "route" in r else "404" for r in routes]
    assert kinds == sorted(kinds, key=["pinned", "line", "404"].index)
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    deployments = set(harness.deployment_routes(catalog))
    assert set(pinned) == deployments
    # No shadow clusters: the mesh file does not ask for shadow steps ("shadow": true).
    assert clusters == deployments | {"order-1.2.0-sidecar-forward", "order-2.0.0-sidecar-forward"}

    # Each listener's copy of the one catalog carries its own overlay.
    def embedded(listener):
        http_filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        return json.loads(http_filters[0]["typed_config"]["config"]["configuration"]["value"])

    assert embedded(listeners[1]) == {**catalog, "trust_caller_headers": True}
    assert embedded(listeners[3]) == {**catalog, "caller": {"service": "order", "version": "2.0.0"}}
    runtime = config["layered_runtime"]["layers"]
    assert {"name": "admin", "admin_layer": {}} in runtime


def test_sidecar_listeners_forward(tmp_path):
    mesh = json.loads(DEMO_MESH.read_text())
    mesh["wasm"] = str(harness.WASM)
    for listener in mesh["listeners"]:
        listener["catalog"] = str(harness.DEMO_CATALOG)
    mesh["listeners"].append({"name": "order-sidecar", "address": f"127.0.0.1:{harness.free_port()}",
                              "catalog": str(harness.DEMO_CATALOG),
                              "forward_to": f"127.0.0.1:{harness.free_port()}"})
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    result = meshver("render", "envoy", tmp_path / "mesh.json", "-o", tmp_path / "envoy.json")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "envoy.json").read_text())
    sidecar = config["static_resources"]["listeners"][-1]
    routes = sidecar["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert routes == [{"match": {"prefix": "/"}, "route": {"cluster": "order-sidecar-forward", "timeout": "5s"}}]
    assert config["static_resources"]["clusters"][-1]["name"] == "order-sidecar-forward"


# An HTTP stream's context in a VM (a root context's parent is 0), as Envoy's wasm:trace logs it.
STREAM_CONTEXT_CREATED = re.compile(r"proxy_on_context_create\(\d+, [1-9]\d*\)")


def test_a_request_without_body_work_never_enters_the_body_filter():
    """The rendered body filter sits inside Envoy's composite filter, which creates it only for
    a request the header filter marked: an unmarked request enters one VM, the header filter's,
    once per context (Envoy's wasm:trace counts them). Inside match_delegate, which skipped only
    its callbacks, Envoy still created and deleted a body filter context for every request."""
    catalog = {"services": [{
        "name": "user", "match": {"path_prefixes": ["/login"]}, "default_version": "2",
        "deployments": [{"version": "1.4.0"}, {"version": "2.1.0"}],
        # Version 2 has a contract, so its requests are marked; version 1's are not.
        "data": {"contracts": [{"version": "2", "path_prefix": "/login", "schema": {"type": "object"}}]}}]}
    with harness.Upstream("user", "1.4.0") as v1, harness.Upstream("user", "2.1.0") as v2:
        config = harness.render_envoy(harness.free_port(), [
            {"name": "edge", "port": harness.free_port(), "catalog": catalog}],
            {"user-1.4.0": v1.port, "user-2.1.0": v2.port})
        filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "http_filters"]
        assert [f["name"] for f in filters] == ["envoy.filters.http.wasm", "meshver-body", "envoy.filters.http.router"]
        assert filters[1]["typed_config"]["extension_config"]["name"] == "envoy.filters.http.composite"
        with harness.Envoy(config, concurrency=1, name="body-composite", component_log_level="wasm:trace") as envoy:
            unmarked, marked = 3, 2
            for version in ["1"] * unmarked + ["2"] * marked:
                answer = harness.http1("POST", envoy.url + "/login", {"x-api-version": version,
                                                                      "content-type": "application/json"}, "{}")
                assert answer.status == 200, answer

            def contexts():
                log = envoy.log_text()
                return len(STREAM_CONTEXT_CREATED.findall(log)), log.count("proxy_on_delete(")

            # The last request is marked: once it is in the log, every earlier one is too.
            expected = unmarked + 2 * marked
            harness.wait_for(lambda: contexts()[0] >= expected and contexts()[0] == contexts()[1], 10,
                             "every stream context created and deleted in the log")
            assert contexts() == (expected, expected)
            assert envoy.stats()["http.edge.composite.filter_delegation_success"] == marked


def test_render_refuses_missing_endpoints_and_bad_catalogs(tmp_path):
    mesh = json.loads(DEMO_MESH.read_text())
    for listener in mesh["listeners"]:
        listener["catalog"] = str(harness.DEMO_CATALOG)
    del mesh["endpoints"]["user-2.1.0"]
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    result = meshver("render", "envoy", tmp_path / "mesh.json")
    assert result.returncode == 1 and result.stdout == ""
    assert re.fullmatch(r'meshver: no endpoint for route key "user-2.1.0" .*; add .*\n', result.stderr)

    (tmp_path / "bad.json").write_text('{"services": []}')
    mesh["listeners"][0]["catalog"] = "bad.json"
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    result = meshver("render", "envoy", tmp_path / "mesh.json")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{tmp_path / 'bad.json'}: $.services: ")


# --- render istio ----------------------------------------------------------------------

def crd_schemas():
    """{(group, kind, version): openAPIV3Schema} from Istio's CRDs (tests/specs/istio)."""
    import yaml
    schemas = {}
    for doc in yaml.safe_load_all(CRDS.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            schemas[(spec["group"], spec["names"]["kind"], version["name"])] = \
                version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(value, schema, path="$"):
    """Fields the schema does not declare (Kubernetes would silently prune them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def load_yaml_like_kubernetes(text):
    """YAML documents as Kubernetes reads them: sigs.k8s.io/yaml keeps date-like plain scalars
    (the catalog's `sunset: 2027-06-30`) as strings, where PyYAML would make dates."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return [d for d in yaml.load_all(text, Loader=Loader) if d]


def validate_manifests(text):
    import jsonschema

    schemas = crd_schemas()
    docs = load_yaml_like_kubernetes(text)
    for doc in docs:
        group, version = doc["apiVersion"].split("/")
        key = (group, doc["kind"], version)
        assert key in schemas, f"no CRD for {key}"
        # metadata is checked by the API server, not the CRD schema.
        jsonschema.validate({k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")},
                            schemas[key])
        assert unknown_fields(doc["spec"], schemas[key]["properties"]["spec"]) == [], doc["kind"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    return docs


@pytest.mark.parametrize("path", sorted((ROOT / "envoy/istio").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_istio_manifests_are_what_render_produces(path):
    assert path in SHIPPED_ISTIO, f"{path.name}: add the command that renders it to SHIPPED_ISTIO"
    command = SHIPPED_ISTIO[path]
    result = meshver(*command)
    assert result.returncode == 0, result.stderr
    relative = path.relative_to(ROOT)
    assert path.read_text() == result.stdout, (
        f"{relative} is stale: run `target/release/meshver {' '.join(command)} -o {relative}` "
        "from the repository root")


def test_every_shipped_istio_manifest_is_valid_against_istio_crds():
    shipped = sorted((ROOT / "envoy/istio").glob("*.yaml"))
    assert DEMO_ISTIO in shipped
    for path in shipped:
        docs = validate_manifests(path.read_text())
        assert {d["kind"] for d in docs} <= {"WasmPlugin", "DestinationRule", "VirtualService", "EnvoyFilter"}
        plugins = [d["spec"] for d in docs if d["kind"] == "WasmPlugin"]
        catalog = {k: v for k, v in plugins[0]["pluginConfig"].items() if k != "caller"}
        body_work = any("data" in service for service in catalog["services"])
        # Each deployment's workloads (its app and version labels) run the filter as that caller.
        roles = ["meshver", "meshver-body"] if body_work else ["meshver"]
        workloads = [{"app": s["name"], "version": d["version"]} for s in catalog["services"] for d in s["deployments"]]
        assert [(p["pluginName"], p["selector"]["matchLabels"]) for p in plugins] == [
            (role, labels) for labels in workloads for role in roles], path
        for plugin in plugins:
            labels = plugin["selector"]["matchLabels"]
            assert plugin["pluginConfig"] == {**catalog, "caller": {"service": labels["app"],
                                                                    "version": labels["version"]}}
        assert envoy_filters(docs) == (["meshver-body-buffer", "meshver-stats"] if body_work else ["meshver-stats"])
    # The deprecated user 1.4.0 announces itself wherever a route sends there, and only there.
    user = next(d for d in validate_manifests(DEMO_ISTIO.read_text())
                if d["kind"] == "VirtualService" and d["metadata"]["name"] == "user")
    for route in user["spec"]["http"]:
        for to in route["route"]:
            sent = to.get("headers", {}).get("response", {}).get("set")
            if to["destination"]["subset"] == "user-1-4-0":
                assert sent["deprecation"] == "@1767225600" and sent["sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT", to
                assert sent["link"] == '<https://api.example.com/docs/user/v2>; rel="successor-version"'
            else:
                assert sent is None, to


def envoy_filters(docs):
    """The names of the EnvoyFilters among rendered resources, in order."""
    return [d["metadata"]["name"] for d in docs if d["kind"] == "EnvoyFilter"]


def envoy_filter(docs, name):
    """The spec of the rendered EnvoyFilter `name`."""
    return next(d["spec"] for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == name)


def test_istio_rendering_with_options_is_valid():
    # --body-image: used only if the demo catalog has body work, needed then with an OCI --image.
    result = meshver(*RENDER_DEMO_ISTIO, "--namespace", "shop", "--image", "oci://registry.local/meshver:0.1.0",
                     "--body-image", "oci://registry.local/meshver-body:0.1.0", "--selector", "app=gateway")
    assert result.returncode == 0, result.stderr
    docs = validate_manifests(result.stdout)
    plugin = docs[0]
    assert plugin["spec"]["url"] == "oci://registry.local/meshver:0.1.0"
    assert plugin["spec"]["selector"] == {"matchLabels": {"app": "gateway"}}
    assert plugin["spec"]["pluginConfig"] == json.loads(harness.DEMO_CATALOG.read_text())
    assert all(d["metadata"]["namespace"] == "shop" for d in docs)


def without_data(catalog):
    """The catalog with no `data` section in any service: nothing for the body filter."""
    return {**catalog, "services": [{k: v for k, v in service.items() if k != "data"}
                                    for service in catalog["services"]]}


def envoy_buffer_limit(tmp_path, catalog_path):
    """The per_connection_buffer_limit_bytes `meshver render envoy` gives a listener on the catalog."""
    catalog = json.loads(catalog_path.read_text())
    mesh = {"admin": f"127.0.0.1:{harness.free_port()}", "wasm": str(harness.WASM),
            "endpoints": {route: f"127.0.0.1:{harness.free_port()}" for route in harness.deployment_routes(catalog)},
            "listeners": [{"name": "edge", "address": f"127.0.0.1:{harness.free_port()}",
                           "catalog": str(catalog_path)}]}
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    result = meshver("render", "envoy", tmp_path / "mesh.json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"]


def test_istio_body_filter_for_a_catalog_with_data(tmp_path):
    """A catalog with `data` gets a second WasmPlugin, the body module under the root id
    `meshver-body`, placed after the header filter; and an EnvoyFilter that gives the listeners
    where both run the buffer limit `render envoy` gives its listeners."""
    example = tmp_path / "full-example.json"
    example.write_text(full_example())
    catalog = json.loads(example.read_text())
    result = meshver("render", "istio", example, "--namespace", "shop", "--selector", "app=gateway")
    assert result.returncode == 0, result.stderr
    docs = validate_manifests(result.stdout)
    # Apply order: the filters (the selected workloads', then each deployment's), the listeners'
    # limit and the stats tags before the routes that lead through them.
    plugins = sum(d["kind"] == "WasmPlugin" for d in docs)
    assert plugins == 2 + 2 * sum(len(s["deployments"]) for s in catalog["services"])
    assert [d["kind"] for d in docs[:plugins + 2]] == ["WasmPlugin"] * plugins + ["EnvoyFilter"] * 2
    assert envoy_filters(docs) == ["meshver-body-buffer", "meshver-stats"]
    assert {d["kind"] for d in docs[plugins + 2:]} == {"DestinationRule", "VirtualService"}
    header, body, buffer = (d["spec"] for d in (*docs[:2], docs[plugins]))
    assert docs[1]["metadata"] == {"name": "meshver-body", "namespace": "shop"}
    assert (header["pluginName"], body["pluginName"]) == ("meshver", "meshver-body")
    assert header["url"] == "file:///etc/istio/extensions/meshver.wasm"
    assert body["url"] == "file:///etc/istio/extensions/meshver_body.wasm"
    assert header["pluginConfig"] == body["pluginConfig"] == catalog
    # Both where the request leaves, on the same workloads, as HTTP filters that fail closed.
    for field in ("match", "selector", "type", "failStrategy", "phase"):
        assert body[field] == header[field], field
    assert body["match"] == [{"mode": "CLIENT"}] and body["selector"] == {"matchLabels": {"app": "gateway"}}
    assert body["failStrategy"] == "FAIL_CLOSE" and body["type"] == "HTTP"
    # Istio chains one phase's plugins by descending priority: the header filter marks first.
    assert header["priority"] > body["priority"]

    limit = envoy_buffer_limit(tmp_path, example)
    largest = max(s["data"].get("max_body_bytes", 1048576) for s in catalog["services"] if "data" in s)
    assert limit > largest, "the filter, not Envoy's buffer limit, answers a body over max_body_bytes"
    # Every proxy of the namespace, not only the selected gateway: each deployment's own pods run
    # the body plugin too, and under Envoy's default limit would answer a larger body with a 413.
    assert "workloadSelector" not in buffer
    # The listeners of a caller's sidecar and of a gateway: where mode CLIENT plugins run.
    assert sorted(p["match"]["context"] for p in buffer["configPatches"]) == ["GATEWAY", "SIDECAR_OUTBOUND"]
    for patch in buffer["configPatches"]:
        assert patch["applyTo"] == "LISTENER"
        assert patch["patch"] == {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": limit}}
    # No upstream sees the mark, whichever route it takes.
    for vs in (d for d in docs if d["kind"] == "VirtualService"):
        for route in vs["spec"]["http"]:
            assert "x-meshver-body" in route["headers"]["request"]["remove"], route["name"]


def test_istio_body_module_url(tmp_path):
    """The body module's URL is --body-image; without it, meshver_body.wasm beside an --image
    that ends in /meshver.wasm. An OCI image names no file: rendering one with body work
    needs --body-image, and says so."""
    example = tmp_path / "full-example.json"
    example.write_text(full_example())
    oci = ["--image", "oci://registry.local/meshver:0.1.0"]
    refused = meshver("render", "istio", example, *oci)
    assert refused.returncode == 1 and refused.stdout == ""
    assert re.fullmatch(r"meshver: .*data section.*; give --body-image .*\n", refused.stderr), refused.stderr
    given = meshver("render", "istio", example, *oci, "--body-image", "oci://registry.local/meshver-body:0.1.0")
    assert given.returncode == 0, given.stderr
    plugins = [d["spec"] for d in validate_manifests(given.stdout) if d["kind"] == "WasmPlugin"]
    assert {(p["pluginName"], p["url"]) for p in plugins} == {("meshver", "oci://registry.local/meshver:0.1.0"),
                                                             ("meshver-body", "oci://registry.local/meshver-body:0.1.0")}
    served = meshver("render", "istio", example, "--image", "https://files.local/wasm/meshver.wasm")
    plugins = [d["spec"] for d in validate_manifests(served.stdout) if d["kind"] == "WasmPlugin"]
    assert plugins[1]["url"] == "https://files.local/wasm/meshver_body.wasm"
    # No body work: no body module, no buffer limit, and no --body-image needed.
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(without_data(json.loads(example.read_text()))))
    result = meshver("render", "istio", plain, *oci)
    assert result.returncode == 0, result.stderr
    docs = validate_manifests(result.stdout)
    assert {d["spec"]["pluginName"] for d in docs if d["kind"] == "WasmPlugin"} == {"meshver"}
    assert envoy_filters(docs) == ["meshver-stats"]


# A catalog with body work: a contract on POST /register, and a body limit above Envoy's
# default buffer limit (1 MiB), which only the EnvoyFilter raises.
BODY_LIMIT = 2 * 1024 * 1024
BODY_CATALOG = {"services": [{
    "name": "user", "match": {"path_prefixes": ["/register", "/login"]}, "default_version": "2",
    "deployments": [{"version": "2.0.3"}],
    "data": {"max_body_bytes": BODY_LIMIT, "contracts": [
        {"version": "2", "path_prefix": "/register", "methods": ["POST"],
         "schema": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}}]},
}]}


def as_istio_builds_them(docs, labels):
    """The HTTP filters Istio's translation makes, for a workload with `labels`, of the rendered
    WasmPlugins that select it (one phase): one wasm filter each, by descending priority, root id =
    pluginName, configuration = pluginConfig as JSON, no match_delegate around any; the module URLs
    stand for the locally built modules."""
    modules = {"file:///etc/istio/extensions/meshver.wasm": harness.WASM,
               "file:///etc/istio/extensions/meshver_body.wasm": harness.WASM.with_name("meshver_body.wasm")}
    plugins = [d["spec"] for d in docs if d["kind"] == "WasmPlugin"
               and d["spec"].get("selector", {}).get("matchLabels", {}).items() <= labels.items()]
    assert len({p["phase"] for p in plugins}) == 1
    return [{"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": p["pluginName"], "root_id": p["pluginName"],
                   "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(modules[p["url"]])}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(p["pluginConfig"])},
                   "fail_open": p["failStrategy"] == "FAIL_OPEN"}}}
        for p in sorted(plugins, key=lambda p: -p["priority"])]


def test_the_istio_body_filter_works_without_match_delegate(tmp_path):
    """What `render istio` writes for a catalog with data, run as Istio runs it: the body filter
    as a plain wasm filter after the header filter (every request enters it), and the listener's
    buffer limit from the EnvoyFilter. Unmarked requests pass untouched, byte for byte; marked ones
    are checked; a body over max_body_bytes is answered by the filter, not by Envoy."""
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(BODY_CATALOG))
    # A gateway's plugins: the catalog as it is, no caller of its own.
    gateway = {"app": "gateway"}
    rendered = meshver("render", "istio", catalog_path, "--selector", "app=gateway")
    assert rendered.returncode == 0, rendered.stderr
    docs = validate_manifests(rendered.stdout)
    merged = envoy_filter(docs, "meshver-body-buffer")["configPatches"][0]["patch"]["value"]
    with harness.Upstream("user", "2.0.3") as upstream:
        # Listener, routes and clusters from `render envoy` (the VirtualService's job is tested
        # above); the HTTP filters and the listener's buffer limit as Istio would make them.
        config = harness.envoy_config(BODY_CATALOG, harness.free_port(), harness.free_port(),
                                      {harness.deployment_routes(BODY_CATALOG)[0]: upstream.port})
        listener = config["static_resources"]["listeners"][0]
        del listener["per_connection_buffer_limit_bytes"]
        listener.update(merged)
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = [*as_istio_builds_them(docs, gateway), hcm["http_filters"][-1]]
        assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"
        with harness.Envoy(config, name="istio-shaped") as envoy:
            v2 = {"x-api-version": "2"}
            for content_type, body in (("text/plain", b"not json {\xff"), ("application/json", b'{"a": [1, 2]}')):
                answer = harness.http1("POST", envoy.url + "/login", headers={**v2, "content-type": content_type},
                                       body=body)
                assert answer.status == 200, answer.body
                seen = answer.json
                assert seen["body_sha256"] == hashlib.sha256(body).hexdigest(), content_type
                assert seen["headers"].get("content-length") == str(len(body)), seen["headers"]
                assert not any(name.startswith("x-meshver-") for name in seen["headers"]), seen["headers"]
            register = lambda body: harness.http1("POST", envoy.url + "/register",
                                                  headers={**v2, "content-type": "application/json"}, body=body)
            checked = register("{}")
            assert checked.status == 422, checked.body
            assert [e["pointer"] for e in checked.json["errors"]] == ["/email"]
            # Over Envoy's default buffer limit, under max_body_bytes: buffered, checked, passed on.
            large = json.dumps({"email": "a@b.c", "padding": "x" * (BODY_LIMIT * 3 // 4)})
            passed = register(large)
            assert passed.status == 200, passed.body[:300]
            assert passed.json["body_sha256"] == hashlib.sha256(large.encode()).hexdigest()
            too_large = register(json.dumps({"email": "a@b.c", "padding": "x" * BODY_LIMIT}))
            assert too_large.status == 413 and too_large.header("content-type") == "application/problem+json"
            assert too_large.json["type"] == "urn:meshver:problem:body-too-large"


def first_match(routes, headers):
    """The destinations of the first VirtualService route whose header matches all hold."""
    for route in routes:
        for match in route["match"]:
            ok = all(name in headers and (headers[name] == cond["exact"] if "exact" in cond
                                          else re.fullmatch(cond["regex"], headers[name]) is not None)
                     for name, cond in match["headers"].items())
            if ok:
                return route["route"]
    return None


def test_istio_sticky_buckets_match_envoys_weighted_choice():
    """With x-meshver-sticky, the VirtualService picks what Envoy's header_name would:
    value mod 100 below the newest weight → newest, the rest → the older deployment."""
    docs = validate_manifests(meshver(*RENDER_DEMO_ISTIO).stdout)
    vs = next(d for d in docs if d["kind"] == "VirtualService" and d["metadata"]["name"] == "user")
    routes = vs["spec"]["http"]
    user = harness.compiled_catalog(json.loads(harness.DEMO_CATALOG.read_text()))["services"][0]
    line = next(line for line in user["lines"] if line["major"] == 2)
    newest_weight = line["weights"][line["deployments"][-1]]
    for value in range(0, 10000, 7):
        sticky = f"{value:04d}"
        chosen = first_match(routes, {"x-meshver-route": line["route"], "x-meshver-sticky": sticky})
        expected = "user-2-1-0" if value % 100 < newest_weight else "user-2-0-3"
        assert [d["destination"]["subset"] for d in chosen] == [expected], sticky
    unkeyed = first_match(routes, {"x-meshver-route": line["route"]})
    assert [(d["destination"]["subset"], d["weight"]) for d in unkeyed] == [("user-2-1-0", 10), ("user-2-0-3", 90)]
    pinned = first_match(routes, {"x-meshver-route": "user-2.0.3", "x-meshver-sticky": "0001"})
    assert [d["destination"]["subset"] for d in pinned] == ["user-2-0-3"]


# --- render istio: the filter's metrics -----------------------------------------------------

def proxy_config_note(text):
    """The ProxyConfig that the note before the meshver-stats EnvoyFilter tells operators to give
    the proxies, as the pod annotation `proxy.istio.io/config` holds it."""
    import textwrap

    import yaml
    document = next(d for d in text.split("---\n") if "name: meshver-stats" in d)
    note = [line[1:] for line in document.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(note) if "proxy.istio.io/config:" in line)
    annotation = yaml.safe_load(textwrap.dedent("\n".join(note[start:])))
    return yaml.safe_load(annotation["proxy.istio.io/config"])


def test_istio_merges_the_stats_tags_render_envoy_writes():
    """The meshver-stats EnvoyFilter merges into the bootstrap of the namespace's proxies (those
    the plugins run on among them) the tag specifiers `render envoy` writes for the filter's
    labels (one builder makes both), and its note names the proxy settings that keep the counters
    and apply the patch."""
    rendered = meshver(*RENDER_DEMO_ISTIO, "--namespace", "shop", "--selector", "app=gateway")
    assert rendered.returncode == 0, rendered.stderr
    docs = validate_manifests(rendered.stdout)
    stats = envoy_filter(docs, "meshver-stats")
    # Every proxy of the namespace: the selected gateway's and each deployment's run the filter.
    assert "workloadSelector" not in stats
    assert {tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in docs if d["kind"] == "WasmPlugin"} \
        >= {(("app", "gateway"),), (("app", "user"), ("version", "2.1.0"))}
    (patch,) = stats["configPatches"]
    assert patch["applyTo"] == "BOOTSTRAP" and "match" not in patch
    assert patch["patch"]["operation"] == "MERGE" and list(patch["patch"]["value"]) == ["stats_config"]
    tags = patch["patch"]["value"]["stats_config"]["stats_tags"]
    # `render envoy` also names its own clusters (Envoy's envoy.cluster_name); Istio names its own.
    envoy_tags = json.loads(DEMO_ENVOY.read_text())["stats_config"]["stats_tags"]
    assert tags == [tag for tag in envoy_tags if not tag["tag_name"].startswith("envoy.")]
    assert [tag["tag_name"] for tag in tags] == ["service", "version", "route", "outcome", "caller"]
    proxy_config = proxy_config_note(rendered.stdout)
    assert proxy_config == {"proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom.meshver_"]},
                            "proxyMetadata": {"BOOTSTRAP_XDS_AGENT": "true"}}
    # The prefix is the one every tag is anchored on: the matcher keeps what the tags read.
    for tag in tags:
        assert tag["regex"].startswith("^" + re.escape("wasmcustom.meshver_")), tag


def test_istio_stats_settings_keep_and_tag_the_counters_in_envoy():
    """A real Envoy with the stats settings of a sidecar as Istio builds them from the rendered
    resources: no default tags, a stats matcher that keeps only the inclusion prefixes of the
    note's ProxyConfig, and the EnvoyFilter's tags merged in (a BOOTSTRAP merge appends to the
    list). The filter's counters are kept and reach /stats/prometheus with their labels."""
    from prometheus_client.parser import text_string_to_metric_families

    rendered = meshver(*RENDER_DEMO_ISTIO)
    docs = validate_manifests(rendered.stdout)
    merged = envoy_filter(docs, "meshver-stats")["configPatches"][0]["patch"]["value"]["stats_config"]
    prefixes = proxy_config_note(rendered.stdout)["proxyStatsMatcher"]["inclusionPrefixes"]
    catalog = without_data(BODY_CATALOG)
    with harness.Upstream("user", "2.0.3") as upstream:
        config = harness.envoy_config(catalog, harness.free_port(), harness.free_port(),
                                      {harness.deployment_routes(catalog)[0]: upstream.port})
        config["stats_config"] = {
            "use_all_default_tags": False,
            "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": prefix} for prefix in prefixes]}},
            "stats_tags": [*merged["stats_tags"]],
        }
        with harness.Envoy(config, name="istio-stats") as envoy:
            assert harness.http1("POST", envoy.url + "/login").status == 200
            assert harness.http1("POST", envoy.url + "/login", {"x-api-version": "9"}).status == 400

            def scraped():
                text = harness.http1("GET", envoy.admin_url + "/stats/prometheus").body.decode()
                return {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(text) for s in family.samples}

            def requests(version, route, outcome):
                labels = {"service": "user", "version": version, "route": route, "outcome": outcome, "caller": "none"}
                return ("meshver_requests_total", tuple(sorted(labels.items())))

            wanted = {requests("none", "user-v2", "forwarded"): 1,
                      requests("other", "none", "unsupported_version"): 1}
            def counted():
                series = scraped()
                return series if wanted.items() <= series.items() else None

            series = harness.wait_for(counted, 10, "the filter's labelled counters in /stats/prometheus")
            # The matcher was at work: Envoy's own stats (the cluster's requests) are dropped.
            assert {name for name, _ in series} <= {"meshver_requests_total"}, sorted(series)
