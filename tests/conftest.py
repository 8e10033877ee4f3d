"""Pytest glue for the e2e harness: the `demo` stack, Envoy log checks, logs on failure, and
the guard that keeps every test inside the repository."""

import getpass
import json
import os
import sys
import tempfile

import pytest

import harness


def _under(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _pytest_temp():
    """Where pytest keeps its tmp_path folders (and cleans up old ones)."""
    try:
        return os.path.join(tempfile.gettempdir(), f"pytest-of-{getpass.getuser()}")
    except (KeyError, OSError):
        return None


# --- The repository tests itself ----------------------------------------------------------
# A fresh clone has nothing beside it, so a test that reads a file next to the repository
# (such as the team's shared folder) passes here and fails there. Python's audit hook sees
# every file this process opens or lists and every program it starts: a path in the
# repository's parent directory but not in the repository fails the test that used it (or,
# outside any test, the run). Exempt: Python's own installation (a venv made from a Python
# under the same parent reads its standard library there), the temp directory, and whatever
# this process created itself (a clone in /tmp has its tests' temp files beside it). What the
# programs the tests start read is held to the same rule by test_self_contained.py, which
# scans the repository's files.
WATCHED = os.path.realpath(harness.ROOT.parent)
INSIDE = os.path.realpath(harness.ROOT)
EXEMPT = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                        sys.base_exec_prefix, tempfile.gettempdir(), _pytest_temp(),
                                        *sys.path) if p}
# (Not the repository itself, nor the parent or above: that would exempt everything.)
EXEMPT = sorted(p for p in EXEMPT if not _under(p, INSIDE) and not _under(WATCHED, p))
WATCHED_EVENTS = {"open", "os.mkdir", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile",
                  "shutil.copytree", "subprocess.Popen"}

_running = ["collection"]  # the node id of the test running now, or what pytest is doing
outside_reads = []  # (what was running, audit event, path)
_created = []  # real paths of the folders and files this process created beside the repository
_in_hook = []


def _outside_path(path, cwd=None):
    """The real path of `path` if it is watched (beside the repository, not exempt), else None."""
    try:
        path = os.fsdecode(path)  # TypeError for a file descriptor
    except TypeError:
        return None
    real = os.path.realpath(os.path.join(os.fsdecode(cwd) if cwd else os.getcwd(), path))
    if not _under(real, WATCHED) or _under(real, INSIDE):
        return None
    if any(_under(real, p) for p in EXEMPT) or any(_under(real, p) for p in _created):
        return None
    return real


def _creates(flags):
    """Whether os.open flags create a file (O_TMPFILE: a nameless one in the folder named)."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    return bool(flags & os.O_CREAT) or bool(tmpfile and (flags & tmpfile) == tmpfile)


def _paths_read(event, args):
    """The watched paths an audit event reads; records what it creates."""
    if event == "subprocess.Popen":
        _, argv, cwd, _ = args
        argv = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv or [])
        return [_outside_path(a, cwd) for a in argv if isinstance(a, (str, bytes, os.PathLike))
                and os.sep in os.fsdecode(a)]
    path = _outside_path(args[0])
    if event == "os.mkdir" or (event == "open" and isinstance(args[2], int) and _creates(args[2])):
        # Writing, not reading (audit events come before the call: a new path is not there yet).
        # A temporary file opens its folder this way: that folder was not created here.
        if path and not os.path.lexists(path):
            _created.append(path)
        return []
    return [path]


def _audit(event, args):
    if event not in WATCHED_EVENTS or _in_hook:
        return
    _in_hook.append(event)  # realpath below must not come back in here
    try:
        outside_reads.extend((_running[0], event, p) for p in _paths_read(event, args) if p)
    except Exception:  # an audit hook must never break what it watches
        pass
    finally:
        _in_hook.pop()


if os.path.dirname(WATCHED) != WATCHED:  # a repository at / has no "beside"
    sys.addaudithook(_audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running[0] = item.nodeid
    yield
    _running[0] = "session"


def _reads_of(running):
    return [f"  {event} {path}" for who, event, path in outside_reads if who == running]


def pytest_sessionfinish(session, exitstatus):
    """Fail the run for files read outside the repository while no test was running."""
    tested = {item.nodeid for item in getattr(session, "items", [])}
    stray = [f"  {event} {path} (during {who})" for who, event, path in outside_reads if who not in tested]
    if stray:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "\n".join(["read outside the repository (a fresh clone does not have these):", *stray])
        if reporter:
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- Envoy and the demo -------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo():
    """The demo catalog served by real Envoy + the meshver filter + one upstream per deployment.

    Module-scoped: a module that shifts weights at runtime does not leak into the next one.
    """
    catalog = json.loads(harness.DEMO_CATALOG.read_text())
    with harness.DemoStack(catalog) as stack:
        yield stack
    stack.envoy.check_no_wasm_critical()


@pytest.fixture(autouse=True)
def _envoys_of_this_test(request):
    """Stop any Envoy a test started and fail the test if its filter logged [critical][wasm]."""
    first = len(harness.started_envoys)
    request.node.first_envoy = first
    yield
    for envoy in harness.started_envoys[first:]:
        envoy.stop()
        envoy.check_no_wasm_critical()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every Envoy involved to a failed test's report; fail a test at
    teardown if it read a file outside the repository."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "teardown":
        reads = _reads_of(item.nodeid)
        if reads:
            report.outcome = "failed"
            report.longrepr = "\n".join([f"{item.nodeid} read outside the repository "
                                         "(a fresh clone does not have these):", *reads])
    if not report.failed:
        return
    first = getattr(item, "first_envoy", len(harness.started_envoys))
    for index, envoy in enumerate(harness.started_envoys):
        if envoy.running or index >= first:
            report.sections.append((f"{envoy.name} :{envoy.port} log (tail)", envoy.log_tail()))
