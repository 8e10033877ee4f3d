"""Config changed while Envoy serves (docs/operators-guide.md, "Changing config live").

A mesh file with `live_config` makes `meshver render envoy` write each meshver filter as
`config_discovery` on a file in a folder Envoy watches (file-based ECDS, no control plane);
`meshver publish` checks the catalogs as the filter does and writes them there. Under a steady
load of keep-alive connections (HTTP/1.1 and HTTP/2), the test publishes a new default version,
writes a catalog the filter refuses straight into the folder (as a hand edit or a broken tool
would), and moves a weight with `meshver shift`; every answer must be a 200 from the deployment
the config in force names, and each change must show within SWITCH_WITHIN seconds.
"""

import http.client
import json
import os
import threading
import time

import harness
from harness import meshver

# How soon after a change every new request must see it: Envoy reads the file on the rename
# (inotify) and hands the filter to each worker, which takes milliseconds here; the bound leaves
# room for a machine busy with other tests.
SWITCH_WITHIN = 5.0
# Envoy's own [critical][wasm] lines when a catalog the filter refuses arrives ("Plugin meshver
# failed to load", "Plugin configured to fail closed failed to load"): the update is refused.
REFUSED_PLUGIN = "failed to load"
# Each state of the config is served this long under load (four states: about 12 s in all).
HOLD_SECONDS = 3
HOLD_ANSWERS = 100
CATALOG = {"services": [{
    "name": "user", "match": {"path_prefixes": ["/login"]}, "default_version": "1",
    "deployments": [{"version": "1.4.0"}, {"version": "2.0.3", "weight": 100}, {"version": "2.1.0", "weight": 0}],
    # Version 2's bodies are checked: the body filter (in its matcher) is discovered live too.
    "data": {"contracts": [{"version": "2", "path_prefix": "/login", "schema": {"type": "object"}}]},
}]}


def write_mesh(folder, catalog, upstreams, listener_port, admin_port):
    """A mesh file with live_config in `folder`, its catalog beside it; the mesh file's path."""
    (folder / "catalog.json").write_text(json.dumps(catalog, indent=2))
    mesh = {"admin": f"127.0.0.1:{admin_port}", "wasm": str(harness.WASM),
            "endpoints": {route: f"127.0.0.1:{port}" for route, port in upstreams.items()},
            "listeners": [{"name": "edge", "address": f"127.0.0.1:{listener_port}", "catalog": "catalog.json"}],
            "live_config": {"dir": "live"}}
    (folder / "mesh.json").write_text(json.dumps(mesh))
    return folder / "mesh.json"


def set_catalog(mesh_path, **fields):
    catalog = json.loads((mesh_path.parent / "catalog.json").read_text())
    catalog["services"][0].update(fields)
    (mesh_path.parent / "catalog.json").write_text(json.dumps(catalog, indent=2))


def render(mesh_path):
    done = meshver("render", "envoy", mesh_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def publish(mesh_path):
    done = meshver("publish", mesh_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def live_files(mesh_path):
    return {path.name: path.read_bytes() for path in sorted((mesh_path.parent / "live").iterdir())}


def write_refused_catalog(filter_file):
    """Replace the catalog in a filter file with one the filter refuses (a default version no
    deployment serves), as a hand edit or a broken tool would, by a rename as publish does."""
    resources = json.loads(filter_file.read_text())
    plugin = resources["resources"][0]["typed_config"]["config"]
    bad = json.loads(plugin["configuration"]["value"])
    bad["services"][0]["default_version"] = "7"
    plugin["configuration"]["value"] = json.dumps(bad)
    resources["version_info"] = "refused"
    temporary = filter_file.with_name(".refused.tmp")
    temporary.write_text(json.dumps(resources))
    os.rename(temporary, filter_file)


def ecds(envoy, filter_name, stat):
    return envoy.stats().get(f"extension_config_discovery.http_filter.{filter_name}.{stat}")


# Route keys of CATALOG's deployments, with ports where nothing needs to listen.
UPSTREAMS = {"user-1.4.0": 1, "user-2.0.3": 2, "user-2.1.0": 3}


# --- the load ---------------------------------------------------------------------------------

class Answer:
    def __init__(self, connection, kind, started, status, version):
        self.connection, self.kind, self.started = connection, kind, started
        self.status, self.version = status, version


class Load:
    """Requests from `http1` HTTP/1.1 keep-alive connections and one HTTP/2 connection, each
    in its own thread, one after another, alternating a request without a version ("default":
    the catalog's default decides) and one pinned to version 1 ("pinned"), until stop() or
    `limit` seconds. Every answer is kept; an exception counts as a failed request."""

    def __init__(self, url, http1=3, limit=60):
        self.url, self.limit = url, limit
        self.answers, self.failures = [], []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._http1, args=(n,), daemon=True) for n in range(http1)]
        self._threads.append(threading.Thread(target=self._http2, args=(http1,), daemon=True))
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _request(kind):
        headers = {"content-type": "application/json"}
        if kind == "pinned":
            headers["x-api-version"] = "1"
        return headers, b"{}"

    def _loop(self, connection, send):
        deadline = time.monotonic() + self.limit
        sent = 0
        while not self._stopping.is_set() and time.monotonic() < deadline:
            kind = ("default", "pinned")[sent % 2]
            sent += 1
            started = time.monotonic()
            try:
                status, body = send(kind)
                served = json.loads(body).get("version") if status == 200 else None
                answer = Answer(connection, kind, started, status, served)
            except Exception as error:  # noqa: BLE001 - any error is a failed request, kept to report
                with self._lock:
                    self.failures.append(f"connection {connection}, {kind} at {started:.3f}: {error!r}")
                continue
            with self._lock:
                self.answers.append(answer)

    def _http1(self, connection):
        port = int(self.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def send(kind):
            headers, body = self._request(kind)
            conn.request("POST", "/login", body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.read()

        try:
            self._loop(connection, send)
        finally:
            conn.close()

    def _http2(self, connection):
        import httpx

        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            def send(kind):
                headers, body = self._request(kind)
                answer = client.post(self.url + "/login", headers=headers, content=body)
                assert answer.http_version == "HTTP/2", answer.http_version
                return answer.status_code, answer.content

            self._loop(connection, send)

    def snapshot(self):
        with self._lock:
            return list(self.answers)

    def count(self):
        with self._lock:
            return len(self.answers)

    def all_connections_serve(self, version):
        """Whether the latest "default" answer of every connection came from `version`."""
        latest = {}
        for answer in self.snapshot():
            if answer.kind == "default":
                latest[answer.connection] = answer.version
        return len(latest) == len(self._threads) and set(latest.values()) == {version}

    def hold(self, what):
        """Let the load run on for HOLD_SECONDS and at least HOLD_ANSWERS more answers: each
        state of the config is served for a while, whatever the machine's speed."""
        until, target = time.monotonic() + HOLD_SECONDS, self.count() + HOLD_ANSWERS
        harness.wait_for(lambda: time.monotonic() >= until and self.count() >= target,
                         HOLD_SECONDS + 30, f"{HOLD_ANSWERS} more answers ({what})")

    def stop(self):
        self._stopping.set()
        for thread in self._threads:
            thread.join(15)


def switch_delay(answers, since, old, new):
    """Seconds after `since` until requests stopped getting `old`: the start of the last
    "default" request served by `old` (0 if none was), asserting that those after it got `new`."""
    after = sorted((a for a in answers if a.kind == "default" and a.started >= since), key=lambda a: a.started)
    last_old = max((a.started for a in after if a.version == old), default=since)
    later = {a.version for a in after if a.started > last_old}
    assert later == {new}, f"after the switch to {new}, requests got {later}"
    return last_old - since


# --- the test ---------------------------------------------------------------------------------

def test_catalog_and_weight_changes_under_load_drop_nothing(tmp_path):
    with harness.Upstream("user", "1.4.0") as v1, harness.Upstream("user", "2.0.3") as v20, \
            harness.Upstream("user", "2.1.0") as v21:
        upstreams = {"user-1.4.0": v1.port, "user-2.0.3": v20.port, "user-2.1.0": v21.port}
        mesh = write_mesh(tmp_path, CATALOG, upstreams, harness.free_port(), harness.free_port())
        config = render(mesh)
        header_file = tmp_path / "live/meshver-edge.json"
        with harness.Envoy(config, name="live", expected_critical=REFUSED_PLUGIN) as envoy:
            load = Load(envoy.url)
            try:
                harness.wait_for(lambda: load.all_connections_serve("1.4.0"), 30, "every connection answered")
                load.hold("before any change")

                # 1. A new default version, published: no-version requests move to the 2.x line.
                set_catalog(mesh, default_version="2")
                published_at = time.monotonic()
                said = publish(mesh)
                assert "meshver-edge: published" in said and "meshver-body-edge: published" in said, said
                version = json.loads(header_file.read_text())["version_info"]
                harness.wait_for(lambda: load.all_connections_serve("2.0.3"), SWITCH_WITHIN,
                                 "every connection served by the new default")
                assert ecds(envoy, "meshver-edge", "version_text") == version
                assert ecds(envoy, "meshver-body-edge", "config_reload") == 2, "the body filter too"
                load.hold("after the new default")

                # 2. A catalog the filter refuses, written into the folder without meshver's check.
                bad_at = time.monotonic()
                write_refused_catalog(header_file)
                harness.wait_for(lambda: ecds(envoy, "meshver-edge", "config_fail") == 1, 10,
                                 "Envoy refused the bad config")
                # The filter's own line says why; Envoy's says it kept the config it had.
                for line in ("meshver: failed to load plugin config: $.services[0].default_version: "
                             "no deployment serves the default version 7",
                             "Filesystem config update rejected: Unable to create Wasm plugin meshver"):
                    harness.wait_for(lambda: line in envoy.log_text(), 5, f"Envoy logged {line!r}")
                assert ecds(envoy, "meshver-edge", "update_rejected") == 1
                assert ecds(envoy, "meshver-edge", "version_text") == version, "the old config stays"
                load.hold("while the bad config is refused")

                # meshver publish puts the good config back in the file.
                assert "meshver-edge: published" in publish(mesh)

                # 3. A weight change through the admin's runtime: the 2.x line moves to 2.1.0.
                shifted_at = time.monotonic()
                done = meshver("shift", "user", "--to", "2.1.0", "--weight", "100", "--admin", envoy.admin_url)
                assert done.returncode == 0, done.stderr
                harness.wait_for(lambda: load.all_connections_serve("2.1.0"), SWITCH_WITHIN,
                                 "every connection served by the new weight")
                load.hold("after the last change")
                assert ecds(envoy, "meshver-body-edge", "config_fail") == 0
            finally:
                load.stop()

    answers = load.answers
    assert not load.failures, f"{len(load.failures)} requests failed:\n" + "\n".join(load.failures[:10])
    statuses = {a.status for a in answers}
    assert statuses == {200}, statuses
    assert {a.version for a in answers if a.kind == "pinned"} == {"1.4.0"}
    default = [a for a in answers if a.kind == "default"]
    assert {a.version for a in default if a.started < published_at} == {"1.4.0"}
    first = switch_delay([a for a in default if a.started < shifted_at], published_at, "1.4.0", "2.0.3")
    during_bad = [a for a in default if bad_at <= a.started < shifted_at]
    assert len(during_bad) >= HOLD_ANSWERS // 2 and {a.version for a in during_bad} == {"2.0.3"}
    weight = switch_delay(default, shifted_at, "2.0.3", "2.1.0")
    assert first < SWITCH_WITHIN and weight < SWITCH_WITHIN
    span = max(a.started for a in answers) - min(a.started for a in answers)
    print(f"\n{len(answers)} answers over {span:.1f} s, "
          f"none failed; new default in force {first * 1000:.0f} ms after publish started, "
          f"new weight {weight * 1000:.0f} ms after shift started")


def test_a_refused_file_at_startup_fails_closed_until_a_good_one_is_published(tmp_path):
    """No default config is rendered: a filter file Envoy refuses as it starts leaves the
    listener's filter without config, and Envoy answers every request there 500 (no request
    escapes version policy); publishing a good catalog makes it serve, with no restart."""
    with harness.Upstream("user", "1.4.0") as v1:
        mesh = write_mesh(tmp_path, CATALOG, dict.fromkeys(UPSTREAMS, v1.port), harness.free_port(),
                          harness.free_port())
        config = render(mesh)
        write_refused_catalog(tmp_path / "live/meshver-edge.json")
        with harness.Envoy(config, name="refused-at-start", expected_critical=REFUSED_PLUGIN) as envoy:
            assert ecds(envoy, "meshver-edge", "config_fail") == 1
            answer = harness.http1("POST", envoy.url + "/login", body="{}")
            assert answer.status == 500, answer
            assert envoy.stats().get("cluster.user-1.4.0.upstream_rq_total") == 0, "nothing reached upstream"
            assert "meshver-edge: published" in publish(mesh)
            serves = lambda: harness.http1("POST", envoy.url + "/login", body="{}").json or {}
            harness.wait_for(lambda: serves().get("version") == "1.4.0", SWITCH_WITHIN,
                             "served after the good catalog was published")


# --- the CLI alone ----------------------------------------------------------------------------

def test_render_writes_the_filters_into_the_live_folder(tmp_path):
    mesh = write_mesh(tmp_path, CATALOG, UPSTREAMS, 4, 5)
    config = render(mesh)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names == ["meshver-edge", "meshver-body-edge", "envoy.filters.http.router"]
    assert "default_version" not in json.dumps(config), "no catalog is left in the bootstrap"
    source = hcm["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"]
    assert source == {"path": str(tmp_path / "live/meshver-edge.json"),
                      "watched_directory": {"path": str(tmp_path / "live")}}
    assert sorted(live_files(mesh)) == ["bootstrap.json", "meshver-body-edge.json", "meshver-edge.json"]
    assert json.loads((tmp_path / "live/bootstrap.json").read_text()) == config
    resource = json.loads((tmp_path / "live/meshver-edge.json").read_text())["resources"][0]
    assert resource["name"] == "meshver-edge"
    assert json.loads(resource["typed_config"]["config"]["configuration"]["value"]) == CATALOG


def test_publish_checks_the_catalog_first_and_writes_nothing_it_refuses(tmp_path):
    mesh = write_mesh(tmp_path, CATALOG, UPSTREAMS, 4, 5)
    render(mesh)
    before = live_files(mesh)
    assert "meshver-edge: unchanged" in publish(mesh), "the same catalog is not written again"
    assert live_files(mesh) == before

    set_catalog(mesh, default_version="7")
    done = meshver("publish", mesh)
    assert done.returncode == 1 and done.stdout == ""
    assert "catalog.json: $.services[0].default_version: no deployment serves the default version 7" in done.stderr
    assert live_files(mesh) == before

    # Weights are in the routes, not in the filters' config: that cannot go live.
    set_catalog(mesh, default_version="1", deployments=[
        {"version": "1.4.0"}, {"version": "2.0.3", "weight": 50}, {"version": "2.1.0", "weight": 50}])
    done = meshver("publish", mesh)
    assert done.returncode == 1, done.stdout
    assert "need a bootstrap other than the one Envoy runs (they change $.static_resources.listeners[0]" in done.stderr
    assert "meshver shift" in done.stderr
    assert live_files(mesh) == before


def test_publish_needs_a_live_folder(tmp_path):
    mesh = write_mesh(tmp_path, CATALOG, UPSTREAMS, 4, 5)
    plain = json.loads(mesh.read_text())
    del plain["live_config"]
    mesh.write_text(json.dumps(plain))
    done = meshver("publish", mesh)
    assert done.returncode == 1 and "has no live_config" in done.stderr, done.stderr
