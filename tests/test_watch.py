"""`meshver status --watch` in a real terminal: tmux runs it at a fixed size against the real
Envoy of the demo stack while clients send traffic, and the tests read the screen: a row per
deployment with its weight, share, error rate and charts; q, Ctrl-C and --count end it, giving
the terminal back as it was. Without a terminal it prints plain text frames."""

import os
import re
import subprocess
import threading

import pytest

import harness
from harness import meshver

WIDTH, HEIGHT = 150, 30
V1, V2 = {"x-api-version": "1"}, {"x-api-version": "2"}
# One screen row: SERVICE LINE VERSION [(stable)] WEIGHT SHARE REQ/S 5XX P99, then the charts.
ROW = re.compile(r"^(?P<service>\S+)\s+(?P<line>\S+)\s+(?P<version>\d+\.\d+\.\d+)(?P<stable> \(stable\))?\s+"
                 r"(?P<weight>\d+)%\s+(?P<share>\S+)\s+(?P<rate>\S+)\s+(?P<errors>\S+)\s+(?P<p99>\S+)"
                 r"(?P<charts>.*)$")
BARS = set("▁▂▃▄▅▆▇█")
# What the tmux pane prints once the watch has exited: its status, then whether the terminal is
# back in canonical mode with echo (stty prints "-icanon" and "-echo" in raw mode); then the
# shell waits, so that the pane's cursor is the one the watch left (a dead pane hides it).
AFTER = 'echo "[watch exited $?]"; stty -a | grep -o -- "-\\?icanon\\|-\\?echo\\b" | tr "\\n" " "; read wait'


@pytest.fixture
def tmux():
    """A tmux server of this test's own, killed however the test ends."""
    server = harness.Tmux("watch")
    yield server
    server.kill()


class Traffic:
    """Clients of both user lines, about 40 requests a second, until the block ends."""

    def __init__(self, stack):
        self.stack, self.stop = stack, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.05):
            for headers in (V1, V2):
                try:
                    harness.http1("POST", self.stack.url + "/register", headers=headers, body="{}", timeout=5)
                except OSError:
                    pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def watch_command(stack, *flags):
    return (f"{harness.meshver_cli()} status --watch --admin {stack.envoy.admin_url} {' '.join(flags)}; "
            + AFTER)


def rows(screen):
    """{version: the row's fields} of the rows on `screen`."""
    return {m["version"]: m for m in map(ROW.match, screen) if m}


def exited(tmux):
    """The pane's lines from "[watch exited N]" on, once the watch has exited."""
    screen = tmux.output("watch")
    at = next((i for i, line in enumerate(screen) if line.startswith("[watch exited")), None)
    return screen[at:at + 2] if at is not None and len(screen) > at + 1 and screen[at + 1] else None


def assert_terminal_given_back(tmux, after):
    assert after[0] == "[watch exited 0]", after
    assert set(after[1].split()) == {"icanon", "echo"}, f"the terminal is left raw: {after[1]}"
    assert tmux.show("watch", "#{alternate_on} #{cursor_flag}") == "0 1"  # normal screen, cursor shown


@pytest.fixture
def failing_canary(demo):
    """The user 2.x line split 50/50, its 2.1.0 deployment answering every request 503."""
    new = demo.upstreams[demo.route("user", "2.1.0")]
    demo.envoy.set_weights({demo.route("user", "2.0.3"): 50, demo.route("user", "2.1.0"): 50})
    assert harness.http1("POST", new.url + "/__fault?fail_rate=1").status == 200
    yield demo
    assert harness.http1("POST", new.url + "/__fault?fail_rate=0").status == 200


def test_the_screen_shows_each_deployment_live(failing_canary, tmux):
    stack = failing_canary
    tmux.start("watch", watch_command(stack, "--interval 1s"), WIDTH, HEIGHT)
    harness.wait_for(lambda: any(line.startswith("SERVICE") for line in tmux.screen("watch")), 15,
                     "the watch's first frame")
    assert tmux.show("watch", "#{alternate_on} #{cursor_flag}") == "1 0"  # its own screen, no cursor

    def seen():
        found = rows(tmux.screen("watch"))
        new, old, v1 = found.get("2.1.0"), found.get("2.0.3"), found.get("1.4.0")
        ready = (new and old and v1 and new["errors"] == "100.0%" and old["share"] not in ("-", "0.0%")
                 and BARS & set(old["charts"]) and BARS & set(v1["charts"]))
        return found if ready else None

    with Traffic(stack):
        found = harness.wait_for(seen, 20, "traffic, errors and charts on the watch screen")
    screen = "\n".join(tmux.screen("watch"))
    assert screen.startswith(f"meshver status --watch  {stack.envoy.admin_url}  every 1s, window 5m"), screen
    versions = {d["version"]: (s["name"], d["route"]) for s in stack.compiled["services"] for d in s["deployments"]}
    assert set(found) == set(versions), screen
    for version, (service, _) in versions.items():
        assert found[version]["service"] == service
    weights = {version: int(row["weight"]) for version, row in found.items()}
    assert weights == {"1.4.0": 100, "2.0.3": 50, "2.1.0": 50, "1.2.0": 100, "2.0.0": 100}, screen
    assert found["2.0.3"]["stable"] and not found["2.1.0"]["stable"]
    # The two 2.x deployments share their line's requests; 1.4.0 has its line to itself.
    shares = [float(found[v]["share"].rstrip("%")) for v in ("2.0.3", "2.1.0")]
    assert all(share > 0 for share in shares) and abs(sum(shares) - 100) < 0.2, screen
    assert found["1.4.0"]["share"] == "100.0%" and found["2.0.3"]["errors"] == "0.0%"
    assert float(found["2.1.0"]["rate"]) > 0 and found["1.2.0"]["share"] == "-"  # no order traffic
    # 2.1.0 fails every request: its 5XX chart has bars as well as its REQUESTS chart.
    headings = next(line for line in screen.splitlines() if line.startswith("SERVICE"))
    requests_at, errors_at = headings.index("REQUESTS per 1s"), headings.index("5XX per 1s")
    new = found["2.1.0"].string
    assert BARS & set(new[requests_at:errors_at]) and BARS & set(new[errors_at:]), screen
    assert not BARS & set(found["2.0.3"].string[errors_at:]), screen

    tmux.keys("watch", "q")
    assert_terminal_given_back(tmux, harness.wait_for(lambda: exited(tmux), 10, "the watch quitting on q"))


def test_ctrl_c_quits_and_gives_the_terminal_back(demo, tmux):
    tmux.start("watch", watch_command(demo, "--interval 200ms"), WIDTH, HEIGHT)
    harness.wait_for(lambda: rows(tmux.screen("watch")), 15, "the watch's first frame")
    tmux.keys("watch", "C-c")
    assert_terminal_given_back(tmux, harness.wait_for(lambda: exited(tmux), 10, "the watch quitting on Ctrl-C"))


def test_count_stops_after_n_frames_and_leaves_the_last_one(demo, tmux):
    tmux.start("watch", watch_command(demo, "--interval 200ms --count 3"), WIDTH, HEIGHT)
    after = harness.wait_for(lambda: exited(tmux), 15, "the watch stopping after 3 frames")
    assert_terminal_given_back(tmux, after)
    # The last frame stays on the normal screen, above the exit line.
    screen = tmux.output("watch")
    assert screen[0].startswith("meshver status --watch") and "q quits" in screen[0], screen
    assert set(rows(screen)) == {"1.4.0", "2.0.3", "2.1.0", "1.2.0", "2.0.0"}, screen


def test_without_a_terminal_it_prints_text_frames(demo):
    done = subprocess.run([harness.meshver_cli(), "status", "--watch", "--interval", "100ms", "--count", "2",
                           "--admin", demo.envoy.admin_url], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "COLUMNS": str(WIDTH)})
    assert done.returncode == 0, done.stderr
    frames = done.stdout.split("\n\n")
    assert frames[-1] == "" and len(frames) == 3, done.stdout  # two frames, each ends with an empty line
    for frame in frames[:2]:
        lines = frame.splitlines()
        assert lines[0].startswith("meshver status --watch") and lines[0].endswith("Ctrl-C quits"), frame
        assert set(rows(lines)) == {"1.4.0", "2.0.3", "2.1.0", "1.2.0", "2.0.0"}, frame
        assert not any("\x1b" in line for line in lines), "no escape sequences in plain text"


def test_bad_watch_flags_get_one_line_or_usage(demo):
    admin = demo.envoy.admin_url
    zero = meshver("status", "--watch", "--count", "0", "--admin", admin)
    assert zero.returncode == 1 and zero.stderr.startswith('meshver: --count "0" is not a whole number'), zero.stderr
    assert meshver("status", "--watch", "--json", "--admin", admin).returncode == 2
    assert meshver("status", "--interval", "1s", "--admin", admin).returncode == 2  # only with --watch
    nobody = f"127.0.0.1:{harness.free_port()}"
    down = meshver("status", "--watch", "--count", "1", "--admin", nobody)
    assert down.returncode == 1 and f"cannot use the Envoy admin at http://{nobody}" in down.stderr
