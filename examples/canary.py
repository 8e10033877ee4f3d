#!/usr/bin/env python3
"""`make demo-canary`: a canary of user 2.1.0 that goes wrong, and rolls itself back.

The demo's edge Envoy and its five upstreams (examples/demo.py's stack, on free loopback ports),
clients of user API 1 and 2 sending steady traffic, and `meshver rollout user --to 2.1.0` with
short steps. Once the first step has been judged healthy, 2.1.0 starts answering half of its
requests with 503 (its upstream's POST /__fault switch); the rollout sees it at the next step and
rolls the line back to where it started, saying why. `meshver status --watch` shows it all: on a
terminal, in tmux, the watch above and this script's log below; elsewhere (CI, a pipe) its frames
are printed as the rollout goes.

Ends by itself in about half a minute and leaves nothing running. Exit status 0 when it went as
planned: a healthy step, then the rollback naming 2.1.0's error rate, the weights back at their
starting values. Ctrl-C (or detaching from tmux) stops it early; the rollout then rolls back.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import V1_REGISTER, dead_process, run  # noqa: E402  (the demo's stack, signals and cleanup)
from harness import DEMO_CATALOG, DemoStack, Tmux, http1, meshver_cli  # noqa: E402

SERVICE, STABLE, CANARY = "user", "2.0.3", "2.1.0"
# The rollout: short steps, each judged on its own interval.
STEPS, INTERVAL, MAX_ERROR_RATE, MIN_REQUESTS = "20,50,100", "4s", "5%", "5"
# What goes wrong with 2.1.0 once its first step has passed: this share of its answers are 503.
FAIL_RATE = 0.5
# Each line's clients send this many requests a second, for at most CLIENTS_SECONDS, from this
# many connections (so that a slow answer does not slow the others).
CLIENT_RATE, CLIENTS_SECONDS, CLIENT_THREADS = 20, 120, 4
# Simulated users (x-user-id, the catalog's sticky key): each stays on one deployment.
USERS = 200
V2_REGISTER = '{"full_name":"Ada Lovelace","credentials":{"email":"ada@example.com","password":"analytical"}}'
# How long the watch goes on showing the line after the rollback.
AFTER_SECONDS = 4
WATCH_INTERVAL = "1s"
# On a terminal, the watch's pane: the demo's five rows and the frame around them.
WATCH_HEIGHT = 10


class Clients:
    """Clients of one user API line: POST /register at a steady rate, each from a user of its
    own, until stop() or CLIENTS_SECONDS. Counts what answered: (deployment version, status)."""

    def __init__(self, url, line, body):
        self.url, self.line, self.body = url, line, body
        self.answers = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENT_THREADS)]
        for thread in self.threads:
            thread.start()

    def _run(self, first_user):
        period, started = CLIENT_THREADS / CLIENT_RATE, time.monotonic()
        due, user = started, first_user
        while not self.stopping.wait(max(0.0, due - time.monotonic())):
            if time.monotonic() - started > CLIENTS_SECONDS:
                return
            headers = {"x-api-version": self.line, "x-user-id": f"user-{user % USERS:03d}",
                       "content-type": "application/json"}
            try:
                answer = http1("POST", self.url + "/register", headers=headers, body=self.body, timeout=5)
                seen = ((answer.json or {}).get("version", "-"), answer.status)
            except OSError:
                seen = ("-", "no answer")
            with self.lock:
                self.answers[seen] += 1
            user += CLIENT_THREADS
            # Steady, not bursty: a late request is not made up for.
            due = max(due + period, time.monotonic())

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    def summary(self):
        """e.g. `user API 2: 480 requests; 2.0.3 400 (200: 400), 2.1.0 80 (200: 55, 503: 25)`."""
        by_version = {}
        for (version, status), count in sorted(self.answers.items(), key=str):
            by_version.setdefault(version, Counter())[status] += count
        parts = [f"{version} {sum(statuses.values())} ({', '.join(f'{s}: {n}' for s, n in statuses.items())})"
                 for version, statuses in by_version.items()]
        return f"user API {self.line}: {sum(self.answers.values())} requests; {', '.join(parts)}"


class TextWatch:
    """`meshver status --watch` without a terminal: it prints plain text frames, the last of
    which is kept to be shown as the rollout goes."""

    def __init__(self, command):
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.last, self._lines = "", []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                self._lines.append(line.rstrip())
            elif self._lines:  # an empty line ends a frame
                self.last, self._lines = "\n".join(self._lines), []

    def frame(self):
        return self.last

    def stop(self):
        """Stops the watch; its last frame."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.last


class TmuxWatch:
    """On a terminal: a tmux session of its own, the watch above and the log below, attached to
    this terminal until stop(). Detaching (or closing it) asks the scenario to stop."""

    def __init__(self, command, log):
        self.tmux = Tmux(f"canary-{os.getpid()}")
        width, height = os.get_terminal_size()
        self.tmux.start("canary", shlex.join(command), width, height)
        self.tmux.run("set-option", "-g", "status", "off", ";",
                      "split-window", "-v", "-t", "canary", "-l", str(max(5, height - WATCH_HEIGHT - 1)),
                      f"tail -n +1 -f {shlex.quote(str(log))}", ";", "select-pane", "-t", "canary.0")
        self.client = subprocess.Popen([*self.tmux.command, "attach", "-t", "canary"], env=self.tmux.env)

    def detached(self):
        return self.client.poll() is not None

    def frame(self):
        return "\n".join(self.tmux.screen("canary.0")).rstrip()

    def stop(self):
        """Ends the session (and the attached client); the watch's last frame."""
        try:
            last = self.frame()
        except RuntimeError:
            last = ""
        self.tmux.kill()
        try:
            self.client.wait(10)
        except subprocess.TimeoutExpired:
            self.client.kill()
            self.client.wait()
        return last


class Log:
    """The scenario's narration: printed, or, while tmux has the terminal, written to the file its
    log pane shows and printed once tmux is gone."""

    def __init__(self, path=None):
        self.path, self.lines = path, []

    def say(self, text):
        for line in text.splitlines() or [""]:
            self.lines.append(line)
            if self.path:
                with open(self.path, "a") as log:
                    log.write(line + "\n")
            else:
                print(line, flush=True)

    def to_terminal(self):
        """The terminal is this script's again: what was said so far, then the rest as it comes."""
        if self.path:
            print("\n".join(self.lines), flush=True)
            self.path = None


def weights_text(weights):
    return ", ".join(f"{route} {weight}%" for route, weight in weights.items())


def user_v2_weights(stack):
    routes = [stack.route(SERVICE, STABLE), stack.route(SERVICE, CANARY)]
    live = stack.envoy.weights()
    return {route: live[route] for route in routes}


def scenario(stacks, log, on_terminal):
    """The canary: traffic, the rollout, the failure, the rollback; 0 when it went as planned."""
    stack = stacks[0]
    cli = meshver_cli()
    admin = stack.envoy.admin_url
    canary = stack.upstreams[stack.route(SERVICE, CANARY)]
    log.say(f"canary: Envoy {stack.url} (admin {admin}) in front of user 1.4.0, 2.0.3, 2.1.0 and order "
            f"1.2.0, 2.0.0, on free loopback ports")
    # A canary starts with the whole line on the stable deployment.
    subprocess.run([cli, "rollback", SERVICE, "--line", "2", "--admin", admin], check=True, capture_output=True)
    before = user_v2_weights(stack)
    log.say(f"canary: the user 2.x line starts all on {STABLE}: {weights_text(before)}")
    clients, watch, rollout = [], None, None
    healthy_step = failed_at = None
    try:
        clients = [Clients(stack.url, "1", V1_REGISTER), Clients(stack.url, "2", V2_REGISTER)]
        log.say(f"canary: clients of user API 1 and 2 send {CLIENT_RATE} requests a second each")
        watch_command = [cli, "status", "--watch", "--interval", WATCH_INTERVAL, "--admin", admin]
        watch = TmuxWatch(watch_command, log.path) if on_terminal else TextWatch(watch_command)
        rollout_command = [cli, "rollout", SERVICE, "--to", CANARY, "--steps", STEPS, "--interval", INTERVAL,
                           "--max-error-rate", MAX_ERROR_RATE, "--min-requests", MIN_REQUESTS, "--admin", admin]
        log.say("$ " + shlex.join(["meshver", *rollout_command[1:]]))
        rollout = subprocess.Popen(rollout_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in rollout.stdout:
            line = line.rstrip()
            log.say(f"rollout: {line}")
            if re.match(r"step \d+/\d+: .*: ok,", line) and healthy_step is None:
                healthy_step = line
                answer = http1("POST", f"{canary.url}/__fault?fail_rate={FAIL_RATE}")
                log.say(f"canary: {CANARY} now answers {FAIL_RATE:.0%} of its requests with 503 "
                        f"(POST /__fault?fail_rate={FAIL_RATE} on its upstream: {answer.status})")
            elif re.match(r"step \d+/\d+: .*: error rate", line):
                failed_at = line
            if not on_terminal and re.match(r"step \d+/\d+: ", line):
                log.say(indent(watch.frame()))
            if on_terminal and watch.detached():
                log.say("canary: detached from tmux; stopping (the rollout rolls back)")
                rollout.send_signal(signal.SIGINT)
        rollout.wait()
        rolled_back = rollout.returncode == 1 and any("meshver: rolled back" in said for said in log.lines)
        # Let the watch show the line after the rollback.
        deadline = time.monotonic() + AFTER_SECONDS
        while time.monotonic() < deadline and not (on_terminal and watch.detached()):
            time.sleep(0.2)
        if (why := dead_process(stacks)) is not None:
            log.say(f"canary: {why}")
            return 1
        after = user_v2_weights(stack)
    finally:
        if rollout and rollout.poll() is None:
            rollout.send_signal(signal.SIGINT)  # it rolls back, then exits
            rollout.wait(15)
        last_frame = watch.stop() if watch else ""
        log.to_terminal()
        for group in clients:
            group.stop()
    log.say(indent(last_frame))
    for group in clients:
        log.say(f"canary: {group.summary()}")
    log.say(f"canary: weights after the rollout: {weights_text(after)}")
    checks = [(healthy_step is not None, "a step was judged healthy before 2.1.0 failed"),
              (failed_at is not None and f"{stack.route(SERVICE, CANARY)} at" in failed_at,
               f"the rollout stopped on {CANARY}'s error rate"),
              (rolled_back, "the rollout rolled the line back (exit 1)"),
              (after == before, f"the weights are back at their starting values ({weights_text(before)})")]
    for ok, what in checks:
        log.say(f"canary: {'ok' if ok else 'NOT'}: {what}")
    return 0 if all(ok for ok, _ in checks) else 1


def indent(frame):
    return "\n".join("    " + line for line in frame.splitlines())


def main():
    on_terminal = sys.stdout.isatty() and sys.stdin.isatty() and shutil.which("tmux") is not None
    with tempfile.TemporaryDirectory(prefix="meshver-canary-") as workdir:
        log = Log(Path(workdir) / "canary.log" if on_terminal else None)
        if on_terminal:
            log.path.touch()
        try:
            return run("canary", lambda stacks: stacks.append(DemoStack(json.loads(DEMO_CATALOG.read_text()),
                                                                        envoy_name="envoy-canary")),
                       lambda stacks: scenario(stacks, log, on_terminal))
        finally:
            log.to_terminal()


if __name__ == "__main__":
    sys.exit(main())
