"""Where things are, and the process handling the benchmark shares with the e2e tests.

Envoys are started with tests/harness.py's `Envoy` (pinned with its `cpus`, quiet with its
`log_level`), ports come from its `free_port`; only the load generators are started here.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402  (the e2e tests' harness: plain Python, no pytest)

CATALOG = ROOT / "examples/catalog.json"
MIX = ROOT / "bench/mix.json"
LUA = ROOT / "bench/lua/meshver.lua"
MESHVER_WASM = ROOT / "target/wasm32-wasip1/release/meshver.wasm"
# The body filter: the same build with the body callbacks (`make build` writes both).
BODY_WASM = ROOT / "target/wasm32-wasip1/release/meshver_body.wasm"
BODY_SPEC = ROOT / "bench/body.json"
EMPTY_WASM = ROOT / "target/wasm32-wasip1/release/meshver_bench_empty_filter.wasm"
DECIDE_WASM = ROOT / "target/wasm32-wasip1/release/meshver_bench_decide_wasm.wasm"
BODY_WASM_BENCH = ROOT / "target/wasm32-wasip1/release/meshver_bench_body_wasm.wasm"
OPENLOOP = ROOT / "target/release/openloop"
# The native host (`make build`), which the harness's Envoy finds on its module search path;
# beside it, arm N0's module that does nothing (`make bench`), loaded by this name.
NATIVE_MODULE = harness.NATIVE_MODULE
EMPTY_NATIVE_NAME = "meshver_bench_empty"
EMPTY_NATIVE = NATIVE_MODULE.with_name(f"lib{EMPTY_NATIVE_NAME}.so")
# The operator CLI `make bench` builds; MESHVER_CLI=path uses another (as in the e2e tests).
MESHVER_CLI = Path(os.environ.get("MESHVER_CLI") or ROOT / "target/release/meshver")
CRITERION = ROOT / "target/bench-decide/criterion/decide"
BODY_CRITERION = ROOT / "target/bench-body/criterion/body"
RESULTS = ROOT / "bench/results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

# The front Envoy (the one measured) runs alone on one CPU; the load generators and the
# upstream Envoy on the other.
ENVOY_CPU, LOADGEN_CPU = "0", "1"


def log(*parts):
    print(*parts, flush=True)


def run(cmd, timeout):
    """Run a command to its end; its output as text."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# The folder Envoy loads the native modules from (pin_native_modules: a copy of them taken as
# the run starts, so that a rebuild during the run changes no arm).
_native_modules = harness.NATIVE_MODULES


def pin_native_modules(folder):
    """Copies libmeshver.so and arm N0's module into `folder` and has every Envoy started after
    this load them from there. Returns each one's sha256 and size ({name: {...}})."""
    global _native_modules
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for module in (NATIVE_MODULE, EMPTY_NATIVE):
        if module.exists():
            shutil.copy2(module, folder / module.name)
            data = (folder / module.name).read_bytes()
            digests[module.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _native_modules = folder
    return digests


def start_envoy(name, config, cpus, concurrency=1):
    """An Envoy pinned to `cpus`, `concurrency` workers, logging warnings and worse only
    (the harness's Envoy: it waits until the listener accepts, and stops it on exit)."""
    return harness.Envoy(config, concurrency=concurrency, name=f"bench-{name}", cpus=cpus,
                         log_level="warn", component_log_level=None, native_modules=_native_modules)
