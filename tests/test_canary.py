"""The canary demo (`make demo-canary`, examples/canary.py) end to end, as CI runs it (no
terminal: watch frames printed inline) and as an operator does (a terminal, here a tmux pane:
the watch and the log in panes of the canary's own tmux). Each run must reach a healthy step,
then roll back with the reason naming 2.1.0's error rate, end with the weights it started from,
and leave no process behind."""

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

import harness

CANARY = harness.ROOT / "examples/canary.py"
# The whole scenario takes about half a minute; this is how long a run may take at most.
TIMEOUT = 150
STEP_OK = re.compile(r"^rollout: step 1/3: user-2\.1\.0 at 20%: ok, (\d+) requests", re.M)
STEP_FAILED = re.compile(r"^rollout: step 2/3: user-2\.1\.0 at 50%: error rate (\d+\.\d)% > 5\.0% over the last 4s",
                         re.M)
ROLLED_BACK = re.compile(r"^rollout: meshver: rolled back user to 2\.0\.3: error rate (\d+\.\d)% > 5\.0%", re.M)
STARTED = re.compile(r"^canary: the user 2\.x line starts all on 2\.0\.3: (.+)$", re.M)
ENDED = re.compile(r"^canary: weights after the rollout: (.+)$", re.M)
ADMIN = re.compile(r"\(admin http://127\.0\.0\.1:(\d+)\)")
# The 2.1.0 row of a watch frame: its weight and its 5XX.
CANARY_ROW = re.compile(r"^\s*user\s+user-v2\s+2\.1\.0\s+(\d+)%\s+\S+\s+\S+\s+(\d+\.\d)%", re.M)


def processes():
    """Every process now: (pid, session id, command line)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = harness.Path("/proc", entry, "cmdline").read_bytes()
                yield int(entry), os.getsid(int(entry)), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass  # gone meanwhile


def processes_in_session(session):
    """The processes (pid, command line) of a session now."""
    return [(pid, cmdline) for pid, sid, cmdline in processes() if sid == session]


def processes_naming(text):
    """The processes whose command line holds `text` (the canary's own tmux server names its socket)."""
    return [(pid, cmdline) for pid, _, cmdline in processes() if text in cmdline and pid != os.getpid()]


def port_closed(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def assert_went_as_planned(output):
    """What the canary said: a healthy step, then the rollback for 2.1.0's error rate, the weights
    back where they started, what the clients saw, and its own verdict."""
    ok, failed, back = STEP_OK.search(output), STEP_FAILED.search(output), ROLLED_BACK.search(output)
    assert ok and failed and back, output
    assert int(ok[1]) >= 5 and float(failed[1]) > 5.0 and back[1] == failed[1], output
    assert ok.start() < output.index("canary: 2.1.0 now answers 50% of its requests with 503") < failed.start()
    assert "step 3/3" not in output and "now takes 100%" not in output
    assert STARTED.search(output)[1] == ENDED.search(output)[1] == "user-2.0.3 100%, user-2.1.0 0%", output
    assert re.search(r"^canary: user API 1: (\d+) requests; 1\.4\.0 \1 \(200: \1\)$", output, re.M), output
    assert re.search(r"^canary: user API 2: \d+ requests; 2\.0\.3 \d+ \(200: \d+\), 2\.1\.0 \d+ \(200: \d+, 503: \d+\)$",
                     output, re.M), output
    assert len(re.findall(r"^canary: ok: ", output, re.M)) == 4 and "canary: NOT" not in output
    # The last watch frame: 2.1.0 back at 0%, its errors over the window still shown.
    weight, errors = CANARY_ROW.findall(output)[-1]
    assert weight == "0" and float(errors) > 0, output


def test_the_canary_without_a_terminal():
    proc = subprocess.Popen([sys.executable, str(CANARY)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=harness.ROOT)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the canary stops what it started
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 0, out + err
    assert err.strip().splitlines()[-1] == "canary: stopped", err
    assert_went_as_planned(out)
    # Frames printed inline, after each judged step and at the end.
    assert out.count("    meshver status --watch  http://127.0.0.1:") == 3, out
    assert processes_in_session(proc.pid) == [], "left running"
    assert port_closed(int(ADMIN.search(out)[1]))


@pytest.fixture
def tmux():
    server = harness.Tmux("outer")
    yield server
    server.kill()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_the_canary_on_a_terminal(tmux):
    tmux.start("term", f"{sys.executable} {CANARY}; echo \"[canary exited $?]\"; read wait", 140, 40)
    shell = int(tmux.show("term", "#{pane_pid}"))
    canary = harness.wait_for(lambda: next((pid for pid, cmdline in processes_in_session(shell)
                                            if pid != shell and str(CANARY) in cmdline), None), 10,
                              "the canary running in the pane")

    def both_panes():
        screen = "\n".join(tmux.screen("term"))
        return "SERVICE  LINE" in screen and "rollout: step 1/3: user-2.1.0 at 20%: ok" in screen and screen

    try:
        # While it runs, the pane shows the canary's own tmux: the watch above, its log below.
        screen = harness.wait_for(both_panes, TIMEOUT, "the watch and the rollout's log in two panes")
        assert screen.index("SERVICE  LINE") < screen.index("rollout: step 1/3"), screen
        harness.wait_for(lambda: not alive(canary), TIMEOUT, "the canary ending by itself")
    finally:
        if alive(canary):
            os.kill(canary, signal.SIGTERM)  # it stops what it started
            harness.wait_for(lambda: not alive(canary), 30, "the canary stopping")
    output = "\n".join(tmux.output("term"))
    assert "[canary exited 0]" in output, output
    # Once its tmux is gone, the canary prints what its log pane showed, and the last frame.
    assert_went_as_planned(output)
    assert [pid for pid, _ in processes_in_session(shell)] == [shell], "only the pane's shell is left"
    assert processes_naming(f"canary-{canary}") == [], "the canary's tmux is left running"
    assert port_closed(int(ADMIN.search(output)[1]))
