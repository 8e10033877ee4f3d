"""The native host (native/, `libmeshver.so`, an Envoy dynamic module): what a module without a
sandbox must prove beyond the behaviour suite, which `make test` runs on both hosts
(MESHVER_HOST=native). Through the real Envoy 1.40.0, with `meshver render envoy --host native`.

- Envoy logs the module's ABI version as the one it implements (a mismatch is only a warning in
  Envoy's log, so the test is what fails on it).
- Every symbol the library takes from Envoy is one the pinned binary exports, and every hook it
  exports is one Envoy looks up: the hand-written declarations name nothing Envoy lacks.
- The hosts stay apart: no proxy-wasm in the library, no dynamic-module code in the wasm module.
- A panic inside the module stays inside it, in the header filter and in the body filter: the
  request is answered 500, the panic is logged at critical level, Envoy and the next request go on
  (a build with the test-only `panic-probe` feature, which panics on a request header, or on those
  bytes in a body).
- A catalog the module refuses makes Envoy refuse the configuration, logging each error with its
  JSON path, as `meshver check` prints them.
- `meshver render envoy --host native` writes Envoy's dynamic module filter with the catalog the
  wasm filter would get, as the header filter and as the body filter, and refuses `live_config`.
"""

import json
import mmap
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
from harness import http1, http2

ROOT = harness.ROOT
CATALOG = {"services": [{
    "name": "user", "match": {"path_prefixes": ["/login"]}, "default_version": "2",
    "deployments": [{"version": "1.4.0"}, {"version": "2.1.0"}],
}]}
PANIC_HEADER = "x-meshver-test-panic"
# The ABI version the module reports, as native/src/abi.rs declares it.
ABI_VERSION = re.search(r'ABI_VERSION: &\[u8\] = b"([^"\\]+)\\0"',
                        (ROOT / "native/src/abi.rs").read_text()).group(1)


@pytest.fixture(scope="module")
def upstreams():
    with harness.Upstream("user", "1.4.0") as v1, harness.Upstream("user", "2.1.0") as v2:
        yield {"user-1.4.0": v1.port, "user-2.1.0": v2.port}


def native_config(upstreams, catalog=CATALOG):
    listeners = [{"name": "edge", "port": harness.free_port(), "catalog": catalog}]
    return harness.render_envoy(harness.free_port(), listeners, upstreams, host="native")


def symbols(path, which):
    """The dynamic symbols of an ELF file: `which` is --defined-only or --undefined-only."""
    done = subprocess.run(["nm", "-D", which, str(path)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}


def test_envoy_logs_the_abi_version_as_matched(upstreams):
    with harness.Envoy(native_config(upstreams)) as envoy:
        answer = http1("GET", envoy.url + "/login", headers={"x-api-version": "1"})
        # The upstream 1.4.0 answered (its own 404: it serves POST /login only).
        assert answer.json["version"] == "1.4.0", answer.body
        # Logged as the module loads; the log file is flushed every 100 ms.
        harness.wait_for(lambda: "Dynamic module ABI version" in envoy.log_text(), 5, "the ABI check in the log")
        log = envoy.log_text()
    # Stopped as every test stops Envoy (SIGTERM): the module's flush thread is joined as its
    # configuration goes, and nothing crashes on the way out.
    assert envoy.proc.returncode == 0 and not envoy.critical_lines(), envoy.log_tail()
    assert f"Dynamic module ABI version {ABI_VERSION} matched." in log, \
        "\n".join(line for line in log.splitlines() if "ABI version" in line)
    assert "deprecated" not in "".join(line for line in log.splitlines() if "ABI version" in line)


def test_every_symbol_the_module_takes_from_envoy_is_one_the_binary_exports():
    module, envoy = harness.NATIVE_MODULE, harness.envoy_binary()
    imported = {name for name in symbols(module, "--undefined-only") if name.startswith("envoy_")}
    # The calls the header filter cannot do without, among them.
    assert {"envoy_dynamic_module_callback_http_get_headers", "envoy_dynamic_module_callback_http_set_header",
            "envoy_dynamic_module_callback_http_send_response",
            "envoy_dynamic_module_callback_http_filter_config_increment_counter",
            "envoy_dynamic_module_callback_http_filter_config_scheduler_commit"} <= imported
    assert all(name.startswith("envoy_dynamic_module_callback_") for name in imported), imported
    missing = imported - symbols(envoy, "--defined-only")
    assert not missing, f"{module.name} imports what Envoy {harness.envoy_version()} does not export: {missing}"
    # Envoy finds a module's hooks by name (dlsym): each one exported is a name the binary holds.
    hooks = {name for name in symbols(module, "--defined-only") if name.startswith("envoy_dynamic_module_on_")}
    assert "envoy_dynamic_module_on_http_filter_request_headers" in hooks
    with open(envoy, "rb") as binary, mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as text:
        unknown = {hook for hook in hooks if text.find(b"\0" + hook.encode() + b"\0") < 0}
    assert not unknown, f"hooks Envoy never looks up: {unknown}"


def test_the_hosts_stay_apart():
    # No proxy-wasm ABI in the library, and none of its crates: its dependencies are the core's.
    assert not {name for name in symbols(harness.NATIVE_MODULE, "--defined-only") if name.startswith("proxy_")}
    tree = subprocess.run(["cargo", "tree", "-q", "-p", "meshver-native", "-e", "normal", "--prefix", "none"],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    assert "meshver v" in tree and "proxy-wasm" not in tree, tree
    # No dynamic-modules code in the wasm modules.
    for wasm in (harness.WASM, harness.WASM.with_name("meshver_body.wasm")):
        assert b"envoy_dynamic_module" not in wasm.read_bytes(), wasm


@pytest.fixture(scope="module")
def panic_probe():
    """A folder holding the library built with the test-only `panic-probe` feature, as
    `libmeshver.so` (a target folder of its own: the shipped build is left as it is)."""
    target = ROOT / "target/panic-probe"
    subprocess.run(["cargo", "build", "-q", "--profile", "native", "-p", "meshver-native", "--features",
                    "panic-probe", "--target-dir", str(target)], cwd=ROOT, check=True, timeout=900)
    folder = Path(tempfile.mkdtemp(prefix="meshver-panic-probe-"))
    shutil.copy(target / "native/libmeshver_native.so", folder / "libmeshver.so")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_panic_is_answered_500_and_envoy_goes_on(upstreams, panic_probe):
    config = native_config(upstreams)
    with harness.Envoy(config, concurrency=1, native_modules=panic_probe,
                       expected_critical=PANIC_HEADER) as envoy:
        for send in (http1, http2):
            answer = send("GET", envoy.url + "/login", headers={PANIC_HEADER: "1"})
            assert answer.status == 500 and answer.body == b"meshver: internal error\n", answer
            # The same worker, the same module: the next request is decided as ever.
            answer = send("GET", envoy.url + "/login", headers={"x-api-version": "2"})
            assert answer.status != 500 and answer.json["version"] == "2.1.0", answer.body
        assert envoy.running
        panics = [line for line in envoy.critical_lines(harness.NATIVE_LOG) if "panicked in" in line]
    assert len(panics) == 2 and all("on_http_filter_request_headers" in line and PANIC_HEADER in line
                                    for line in panics), panics


def test_a_panic_in_the_body_filter_is_answered_500_and_envoy_goes_on(upstreams, panic_probe):
    catalog = json.loads(json.dumps(CATALOG))
    catalog["services"][0]["data"] = {"contracts": [{"version": "2", "path_prefix": "/login",
                                                     "schema": {"type": "object"}}]}
    config = native_config(upstreams, catalog)
    json_body = {"content-type": "application/json", "x-api-version": "2"}
    with harness.Envoy(config, concurrency=1, native_modules=panic_probe,
                       expected_critical=PANIC_HEADER) as envoy:
        for send in (http1, http2):
            answer = send("POST", envoy.url + "/login", headers=json_body, body=json.dumps({"note": PANIC_HEADER}))
            assert answer.status == 500 and answer.body == b"meshver: internal error\n", answer
            # The next marked request's body is checked as ever (its contract holds), on the same worker.
            answer = send("POST", envoy.url + "/login", headers=json_body, body=b"{}")
            assert answer.status != 500 and answer.json["version"] == "2.1.0", answer.body
        assert envoy.running
        panics = [line for line in envoy.critical_lines(harness.NATIVE_LOG) if "panicked in" in line]
    assert len(panics) == 2 and all("on_http_filter_request_body" in line for line in panics), panics


def test_a_refused_catalog_refuses_the_config_with_json_paths(upstreams):
    config = native_config(upstreams)
    bad = {"services": [{"name": "user", "match": {"path_prefixes": ["/login"]},
                         "deployments": [{"version": "two"}]}], "route_header": 7}
    native = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    native["typed_config"]["filter_config"]["value"] = json.dumps(bad)
    with pytest.raises(RuntimeError) as refused:
        harness.Envoy(config)
    envoy = harness.started_envoys[-1]
    assert not envoy.running
    log = envoy.log_text()
    # The same errors, JSON paths and all, as the CLI's check of the same catalog.
    with tempfile.TemporaryDirectory(prefix="meshver-native-") as folder:
        path = Path(folder) / "catalog.json"
        path.write_text(json.dumps(bad))
        checked = harness.meshver("check", path)
    assert checked.returncode != 0
    errors = re.findall(r"meshver: failed to load plugin config: (.*)", log)
    assert errors, refused.value
    for error in errors:
        assert error.split(":")[0].startswith("$"), error
        assert error in checked.stdout + checked.stderr, (error, checked.stderr)
    assert "Failed to initialize dynamic module" in log


def test_render_host_native_writes_the_dynamic_module_filter(upstreams, tmp_path):
    catalog = json.loads(json.dumps(CATALOG))
    catalog["services"][0]["data"] = {"contracts": [{"version": "2", "path_prefix": "/login",
                                                     "schema": {"type": "object"}}]}
    listeners = [{"name": "edge", "port": harness.free_port(), "catalog": catalog}]
    wasm = harness.render_envoy(harness.free_port(), listeners, upstreams, host="wasm")
    native = harness.render_envoy(harness.free_port(), listeners, upstreams, host="native")
    filters = {name: config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"] for name, config in (("wasm", wasm), ("native", native))}
    header = filters["native"][0]["typed_config"]
    assert header["@type"].endswith("dynamic_modules.v3.DynamicModuleFilter")
    assert header["dynamic_module_config"]["name"] == harness.NATIVE_MODULE.name.removeprefix("lib").removesuffix(".so")
    assert header["filter_name"] == "meshver"
    # The same catalog text as the wasm filter's.
    assert header["filter_config"]["value"] == filters["wasm"][0]["typed_config"]["config"]["configuration"]["value"]
    # The body filter is the module too, under the body filter's name, behind the same matcher.
    body = [f["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]["on_match"]["action"]["typed_config"]
            for f in (filters["native"][1], filters["wasm"][1])]
    assert body[0]["typed_config"]["typed_config"]["filter_name"] == "meshver-body"
    assert body[0]["typed_config"]["typed_config"]["filter_config"] == header["filter_config"]
    for f in (filters["native"][1], filters["wasm"][1]):
        f["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]["on_match"]["action"]["typed_config"] = None
    assert filters["native"][1:] == filters["wasm"][1:]
    static = native["layered_runtime"]["layers"][0]["static_layer"]
    assert static == {"envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": True}

    # Live config swaps wasm filters' config files; the native filter has none to swap.
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG))
    mesh = {"admin": "127.0.0.1:1", "wasm": str(harness.WASM), "live_config": {"dir": str(tmp_path / "live")},
            "endpoints": {name: f"127.0.0.1:{port}" for name, port in upstreams.items()},
            "listeners": [{"name": "edge", "address": "127.0.0.1:2", "catalog": str(tmp_path / "catalog.json")}]}
    (tmp_path / "mesh.json").write_text(json.dumps(mesh))
    refused = harness.meshver("render", "envoy", "--host", "native", tmp_path / "mesh.json")
    assert refused.returncode != 0 and "live_config is for the wasm host" in refused.stderr, refused.stderr
    assert harness.meshver("render", "envoy", tmp_path / "mesh.json").returncode == 0
