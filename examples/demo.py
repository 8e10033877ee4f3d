#!/usr/bin/env python3
"""`make demo`: the five example deployments behind Envoy + meshver on localhost:10000.

Runs until Ctrl-C or SIGTERM, then stops everything it started; exits non-zero
if any of its processes dies on its own.
"""

import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import DEMO_CATALOG, ROOT, DemoStack  # noqa: E402  (plain module, no pytest)

# The shipped Envoy config, rendered by `meshver render envoy envoy/demo.mesh.json` (a test
# keeps the two in sync); the ports below come from the same mesh file.
DEMO_MESH = json.loads((ROOT / "envoy/demo.mesh.json").read_text())
DEMO_ENVOY = ROOT / "envoy/demo.json"


def port_of(address):
    return int(address.rsplit(":", 1)[1])


PORTS = {name: port_of(address) for name, address in DEMO_MESH["endpoints"].items()}
LISTENERS = {listener["name"]: port_of(listener["address"]) for listener in DEMO_MESH["listeners"]}
LISTENER_PORT, ADMIN_PORT = LISTENERS["edge"], port_of(DEMO_MESH["admin"])
# The callee side of the mesh (trusts identities stamped by sidecars), and each order
# deployment's own outbound sidecar.
INBOUND_PORT = LISTENERS["inbound"]
SIDECAR_PORTS = {name.removesuffix("-sidecar"): port for name, port in LISTENERS.items() if name.endswith("-sidecar")}
# Not 0, so that test Envoys (other base ids) can run next to the demo.
BASE_ID = 7

TRY = """\
meshver demo: Envoy on http://localhost:10000 (admin http://localhost:9901)
  user 1.4.0, 2.0.3, 2.1.0 and order 1.2.0, 2.0.0 on 127.0.0.1:18001-18005;
  user's inbound side on :10001; order 1.2.0's sidecar on :10011, order 2.0.0's on :10012.

Versions (each answer shows which deployment served it and what it received):
  curl -s -XPOST localhost:10000/register                                  # no version: the 1.x line
  curl -s -XPOST localhost:10000/register -H 'x-api-version: 2'            # header: 2.x, split 90/10
  curl -s -XPOST localhost:10000/v2/register                               # path prefix, stripped
  curl -s -XPOST localhost:10000/register_v2                               # path suffix, stripped
  curl -s -XPOST localhost:10000/register -H 'Accept: application/vnd.acme.v2+json'
  curl -s -XPOST 'localhost:10000/register?api-version=2.1'                # query: pinned to 2.1.0
  curl -s -XPOST localhost:10000/register -H 'x-api-version: 3'            # no such version: 400 problem+json
  curl -s -XPOST localhost:10000/v1/register -H 'x-api-version: 2'         # conflict: 400
Compatibility and lifecycle:
  curl -s -XPOST localhost:10000/v2/order                                  # order 2.0.0 -> its sidecar -> user 2.1.0 only
  curl -s -XPOST localhost:10012/login -H 'x-api-version: 1'               # order 2.0.0 asks for user 1: 503
  curl -s -XPOST localhost:10001/login -H 'x-meshver-caller: order/2.0.0' -H 'x-api-version: 1'   # 409
  curl -si -XPOST localhost:10000/login | grep -iE '^(deprecation|sunset|link):'             # 1.x is deprecated
Traffic:
  curl -s -XPOST localhost:10000/login -H 'x-api-version: 2' -H 'x-user-id: alice'         # sticky per user
  curl -s -XPOST 'localhost:9901/runtime_modify?routing.user-v2.user-2.1.0=50&routing.user-v2.user-2.0.3=50'

Ctrl-C stops everything."""


class Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def on_signal(_signum, _frame):
    raise Stop


def main():
    catalog = json.loads(DEMO_CATALOG.read_text())
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = None
    try:
        stack = DemoStack(catalog, ports=PORTS, listener_port=LISTENER_PORT,
                          admin_port=ADMIN_PORT, base_id=BASE_ID,
                          inbound_port=INBOUND_PORT, sidecar_ports=SIDECAR_PORTS,
                          config=json.loads(DEMO_ENVOY.read_text()))
        print(TRY, flush=True)
        while True:
            for name, proc in stack.processes():
                if proc.poll() is not None:
                    print(f"demo: {name} exited with code {proc.returncode}; stopping",
                          file=sys.stderr)
                    if name == "envoy":
                        print(stack.envoy.log_tail(), file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except Stop:
        return 0
    except RuntimeError as err:  # a process failed to start, with its log in the message
        print(f"demo: {err}", file=sys.stderr)
        return 1
    finally:
        # Signals during cleanup must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stack:
            stack.stop()
            for line in stack.envoy.critical_lines("wasm"):
                print(f"demo: filter logged: {line}", file=sys.stderr)
        print("demo: stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
