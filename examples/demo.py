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
from harness import DEMO_CATALOG, DemoStack  # noqa: E402  (plain module, no pytest)

PORTS = {"user-1.4.0": 18001, "user-2.0.3": 18002, "user-2.1.0": 18003,
         "order-1.2.0": 18004, "order-2.0.0": 18005}
LISTENER_PORT, ADMIN_PORT = 10000, 9901
# Not 0, so that test Envoys (other base ids) can run next to the demo.
BASE_ID = 7

TRY = """\
meshver demo: Envoy on http://localhost:10000 (admin http://localhost:9901)

Try:
  curl -s -XPOST localhost:10000/register                                  # no version: 1.x line
  curl -s -XPOST localhost:10000/register -H 'x-api-version: 2'            # header
  curl -s -XPOST localhost:10000/v2/register                               # path prefix
  curl -s -XPOST localhost:10000/register_v2                               # path suffix
  curl -s -XPOST localhost:10000/register -H 'Accept: application/vnd.acme.v2+json'
  curl -s -XPOST 'localhost:10000/register?api-version=2.1'                # query
  curl -s -XPOST localhost:10000/register -H 'x-api-version: 3'            # no such version: 400 problem+json
  curl -s -XPOST localhost:10000/v1/register -H 'x-api-version: 2'         # conflict: 400
  curl -s -XPOST localhost:10000/order                                     # order checks the user via the mesh

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
                          admin_port=ADMIN_PORT, base_id=BASE_ID)
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
