#!/usr/bin/env python3
"""`make demo`: the five example deployments behind Envoy + meshver on localhost:10000, and
a second Envoy on localhost:10002 for the world after user 1.4.0 is switched off, where user
API 1 is served by the 2.x deployments through changes to its bodies.

Runs until Ctrl-C or SIGTERM, then stops everything it started; exits non-zero
if any of its processes dies on its own.
"""

import json
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import DEMO_CATALOG, ROOT, DemoStack, Prometheus  # noqa: E402  (plain module, no pytest)

# The shipped Envoy configs, rendered by `meshver render envoy envoy/<name>.mesh.json` (a test
# keeps each in sync); the ports below come from the same mesh files.
DEMO_MESH = json.loads((ROOT / "envoy/demo.mesh.json").read_text())
DEMO_ENVOY = ROOT / "envoy/demo.json"
# The second edge: the user service without 1.4.0, version 1 served by 2.x (its `data`).
SERVED_CATALOG = ROOT / "examples/catalog-served.json"
SERVED_MESH = json.loads((ROOT / "envoy/demo-served.mesh.json").read_text())
SERVED_ENVOY = ROOT / "envoy/demo-served.json"


def port_of(address):
    return int(address.rsplit(":", 1)[1])


PORTS = {name: port_of(address) for name, address in DEMO_MESH["endpoints"].items()}
LISTENERS = {listener["name"]: port_of(listener["address"]) for listener in DEMO_MESH["listeners"]}
LISTENER_PORT, ADMIN_PORT = LISTENERS["edge"], port_of(DEMO_MESH["admin"])
# The callee side of the mesh (trusts identities stamped by sidecars), and each order
# deployment's own outbound sidecar.
INBOUND_PORT = LISTENERS["inbound"]
SIDECAR_PORTS = {name.removesuffix("-sidecar"): port for name, port in LISTENERS.items() if name.endswith("-sidecar")}
SERVED_PORT = port_of(SERVED_MESH["listeners"][0]["address"])
SERVED_ADMIN_PORT = port_of(SERVED_MESH["admin"])
# Not 0, so that test Envoys (other base ids) can run next to the demo; one per Envoy.
BASE_ID, SERVED_BASE_ID = 7, 8
# Prometheus, scraping both Envoys' admins every second, with the rules of prometheus/rules.yml.
PROMETHEUS_PORT = 9090


class DataCall(NamedTuple):
    """One JSON POST of the TRY text's Data section. tests/test_demo_smoke.py sends each one
    and checks `answer`: "1.x" (a user 1 answer), or the status of a problem."""

    port: int
    path: str
    body: str
    answer: object

    def curl(self):
        return (f"curl -s localhost:{self.port}{self.path} -H 'content-type: application/json' "
                f"-d {shlex.quote(self.body)}")


# A client of user API 1: 1.4.0 takes these bodies as they are; 2.x wants the name as full_name
# and email and password under credentials (examples/catalog-served.json's change 1 -> 2).
V1_REGISTER = '{"name":"Ada Lovelace","email":"ada@example.com","password":"analytical"}'
V1_LOGIN = '{"email":"ada@example.com","password":"analytical"}'
# The Data section of TRY: what each group of lines shows, then its lines.
DATA = [
    ([f"the same user 1 bodies: 1.4.0 answers on :{LISTENER_PORT}; "
      f"on :{SERVED_PORT} 2.x gets them in 2's shape",
      '("body", x-api-version: 2), and its "result" is walked back to 1\'s shape'],
     [DataCall(port, f"/v1/{endpoint}", body, "1.x")
      for endpoint, body in (("register", V1_REGISTER), ("login", V1_LOGIN))
      for port in (LISTENER_PORT, SERVED_PORT)]),
    (["422: breaks 2.1's contract, naming each failing field by its JSON pointer"],
     [DataCall(SERVED_PORT, "/v2.1/register", '{"full_name":"","credentials":{"email":"a"}}', 422)]),
    (["400: not JSON"], [DataCall(SERVED_PORT, "/v2/register", '{"full_name":', 400)]),
]
DATA_CALLS = [call for _, calls in DATA for call in calls]
DATA_LINES = [line for comments, calls in DATA
              for line in [f"# {comment}" for comment in comments] + [call.curl() for call in calls]]

TRY = """\
meshver demo: Envoy on http://localhost:10000 (admin http://localhost:9901)
  user 1.4.0, 2.0.3, 2.1.0 and order 1.2.0, 2.0.0 on 127.0.0.1:18001-18005;
  user's inbound side on :10001; order 1.2.0's sidecar on :10011, order 2.0.0's on :10012.
A second Envoy on http://localhost:10002 (admin http://localhost:9902): user after 1.4.0 is
  switched off, 2.0.3 and 2.1.0 only; version 1 is served by 2.x (examples/catalog-served.json).
Prometheus on http://localhost:9090 scrapes both Envoys every second (rules: prometheus/rules.yml).

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
Metrics:
  curl -s localhost:9090/api/v1/query --data-urlencode 'query=sum by (version, outcome, caller) (meshver_requests_total{service="user"})'
  curl -s localhost:9090/api/v1/alerts       # MeshverDeprecatedVersionCalled, per caller of user 1
Data:
""" + "\n".join("  " + line for line in DATA_LINES) + """

Ctrl-C stops everything."""


class Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def on_signal(_signum, _frame):
    raise Stop


def run(name, start, scenario):
    """What `make demo` and `make demo-canary` (examples/canary.py) share: start the stacks
    (`start(stacks)` appends each one as it comes up, so that a failure part-way still stops
    what is up), then run `scenario(stacks)` for the exit status. Ctrl-C or SIGTERM ends it
    with 0, a process that fails to start with 1. Every stack stops on the way out, the newest
    first (it may route to an older one's upstreams), and what its filter logged at critical
    level is shown."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stacks = []
    try:
        start(stacks)
        return scenario(stacks)
    except Stop:
        return 0
    except RuntimeError as err:  # a process failed to start, with its log in the message
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    finally:
        # Signals during cleanup must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for stack in reversed(stacks):
            stack.stop()
            for line in stack.envoy.critical_lines("wasm"):
                print(f"{name}: {stack.envoy.name} filter logged: {line}", file=sys.stderr)
        print(f"{name}: stopped", file=sys.stderr)


def dead_process(stacks):
    """A process of `stacks` that exited on its own, said in a line (with Envoy's log tail if it
    was Envoy), or None while all run."""
    for stack in stacks:
        for name, proc in stack.processes():
            if proc.poll() is not None:
                why = f"{name} exited with code {proc.returncode}; stopping"
                return f"{why}\n{stack.envoy.log_tail()}" if proc is stack.envoy.proc else why
    return None


def start_demo(stacks):
    edge = DemoStack(json.loads(DEMO_CATALOG.read_text()), ports=PORTS, listener_port=LISTENER_PORT,
                     admin_port=ADMIN_PORT, base_id=BASE_ID,
                     inbound_port=INBOUND_PORT, sidecar_ports=SIDECAR_PORTS,
                     config=json.loads(DEMO_ENVOY.read_text()))
    stacks.append(edge)
    # The same 2.x processes behind a second Envoy, which knows no 1.4.0.
    stacks.append(DemoStack(json.loads(SERVED_CATALOG.read_text()), listener_port=SERVED_PORT,
                            admin_port=SERVED_ADMIN_PORT, base_id=SERVED_BASE_ID,
                            config=json.loads(SERVED_ENVOY.read_text()), shared=edge.upstreams,
                            envoy_name="envoy-served"))
    print(TRY, flush=True)


def until_a_process_dies(stacks, prometheus=None):
    while (why := dead_process(stacks) or (prometheus and prometheus.exited())) is None:
        time.sleep(0.5)
    print(f"demo: {why}", file=sys.stderr)
    return 1


def start_prometheus():
    """The demo's Prometheus, on PROMETHEUS_PORT, scraping the admin of each Envoy the demo runs."""
    admins = [DEMO_MESH["admin"], SERVED_MESH["admin"]]
    return Prometheus(admins, port=PROMETHEUS_PORT, name="demo-prometheus")


def main():
    try:
        prometheus = start_prometheus()
    except RuntimeError as err:  # not installed (`make demo` installs it), or it failed to start
        print(f"demo: {err}", file=sys.stderr)
        return 1
    with prometheus:
        return run("demo", start_demo, lambda stacks: until_a_process_dies(stacks, prometheus))


if __name__ == "__main__":
    sys.exit(main())
